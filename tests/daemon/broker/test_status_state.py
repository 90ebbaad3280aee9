"""Status rows: live keys only, consistent times, recent errors bounded and token-free."""

from __future__ import annotations

import json

from agentid_client.statusview import render_status, rows
from agentid_daemon.broker.recent_errors import MAX_RECENT_ERRORS, RecentErrors, error_fields
from agentid_daemon.broker.status import status_rows
from agentid_daemon.cache.token_cache import EntryStatus
from agentid_daemon.core.errors import IdentityProviderError
from agentid_daemon.core.models import CredentialSpec, ExchangeKey, ResourceKey

NOW_TRIO, NOW_WALL = 1000.0, 1_800_000_000.0
AGENT = ("https://login.example", "tenant-1", "bp-1", "agent-1")
CREDENTIAL = CredentialSpec("secret_file", "/run/credentials/bp")


def entry(
    key: object,
    state: str,
    *,
    expires_in: float | None,
    refresh_in: float | None,
    profile: str | None = None,
    failures: int = 0,
) -> EntryStatus:
    return EntryStatus(
        key=key,
        description=str(key),
        label="resource" if isinstance(key, ResourceKey) else "",
        state=state,  # type: ignore[arg-type]
        expires_at=None if expires_in is None else NOW_TRIO + expires_in,
        refresh_at=None if refresh_in is None else NOW_TRIO + refresh_in,
        last_requested=NOW_TRIO - 120,
        last_error="IdentityProviderError: AADSTS7000215: bad secret" if failures else None,
        consecutive_failures=failures,
        served_from_cache=0,
        served_from_identity_provider=1,
        info={"profile": profile} if profile else {},
    )


def resource(
    scope: str = "https://graph.microsoft.com/.default", tenant: str = "tenant-1"
) -> ResourceKey:
    return ResourceKey(
        AGENT[0], tenant, *AGENT[2:], "AutonomousApp", (scope,), None, credential=CREDENTIAL
    )


def t1(tenant: str = "tenant-1") -> ExchangeKey:
    return ExchangeKey("t1", AGENT[0], tenant, *AGENT[2:], credential=CREDENTIAL)


def test_a_t1_with_58_minutes_left_never_reads_expired_in_next_refresh() -> None:
    # A T1 whose last refresh attempt failed, backoff over, its retry about to run:
    # the planned refresh lies a moment in the past.
    t1_row = entry(t1(), "backoff", expires_in=58 * 60, refresh_in=-0.4, failures=1)
    (row,) = status_rows([t1_row], NOW_TRIO, NOW_WALL)
    assert row["refresh_on"] >= NOW_WALL  # due now, never in the past
    assert row["expires_on"] == NOW_WALL + 58 * 60
    # The client's clock is a moment later than the daemon's: still "now".
    (cells,) = rows({"entries": [row]}, NOW_WALL + 0.9)
    assert cells[6:8] == ("57m59s", "now")
    assert "expired" not in cells
    # A row the daemon computed earlier (an older daemon, or a slow pipe) reads "now" too.
    (old,) = rows({"entries": [{**row, "refresh_on": NOW_WALL - 3}]}, NOW_WALL)
    assert old[7] == "now"


def test_keys_without_a_token_get_no_row_and_exchange_rows_name_their_profiles() -> None:
    snapshot = [
        entry(resource(), "valid", expires_in=3500, refresh_in=2000, profile="app"),
        entry(
            resource(tenant="bad"),
            "failed",
            expires_in=None,
            refresh_in=None,
            profile="app",
            failures=1,
        ),
        entry(t1(tenant="bad"), "failed", expires_in=None, refresh_in=None, failures=1),
        entry(t1(), "valid", expires_in=3500, refresh_in=2100),
        entry(
            resource(VAULT := "https://vault.azure.net/.default"),
            "pending",
            expires_in=None,
            refresh_in=None,
            profile="vault",
        ),
    ]
    found = status_rows(snapshot, NOW_TRIO, NOW_WALL)
    assert [(r["kind"], r["tenant_id"], r["state"]) for r in found] == [
        ("resource", "tenant-1", "valid"),
        ("t1", "tenant-1", "valid"),
        ("resource", "tenant-1", "pending"),  # its first fetch is running
    ]
    assert found[1]["profiles"] == ["app", "vault"]
    assert found[2]["scopes"] == [VAULT]


def test_rows_that_read_the_same_name_the_key_part_that_differs() -> None:
    snapshot = [
        entry(resource(), "valid", expires_in=3500, refresh_in=2000, profile="app"),
        entry(
            resource(tenant="tenant-2"), "valid", expires_in=3400, refresh_in=2000, profile="app"
        ),
    ]
    text = render_status({"entries": status_rows(snapshot, NOW_TRIO, NOW_WALL)}, now=NOW_WALL)
    assert "agent-1 tenant=tenant-1" in text
    assert "agent-1 tenant=tenant-2" in text


def test_recent_errors_are_bounded_deduplicated_and_carry_no_token() -> None:
    recent = RecentErrors()
    token_like = "eyJ0eXAiOiJKV1QifQ.payload.signature"
    for i in range(MAX_RECENT_ERRORS + 5):
        exc = IdentityProviderError(
            f"AADSTS90002: tenant t-{i} not found", transient=False, aadsts_codes=(90002,)
        )
        recent.record(
            {"kind": "resource", "tenant_id": f"t-{i}"},
            error_fields(exc),
            background=False,
            at=NOW_WALL + i,
        )
    assert len(recent) == MAX_RECENT_ERRORS
    listed = recent.to_json()
    assert listed[0]["tenant_id"] == f"t-{MAX_RECENT_ERRORS + 4}"  # newest first
    assert listed[-1]["tenant_id"] == "t-5"  # the oldest went
    # The same error for the same key again: counted, moved to the front, its
    # latest text kept (Entra's carries a new correlation id each time).
    exc = IdentityProviderError(
        "AADSTS90002: tenant t-7 not found. Correlation ID: 42",
        transient=False,
        aadsts_codes=(90002,),
    )
    recent.record(
        {"kind": "resource", "tenant_id": "t-7"},
        error_fields(exc),
        background=False,
        at=NOW_WALL + 100,
    )
    first = recent.to_json()[0]
    assert (first["tenant_id"], first["count"], first["first_at"]) == ("t-7", 2, NOW_WALL + 7)
    assert first["error_description"].endswith("Correlation ID: 42")
    assert len(recent) == MAX_RECENT_ERRORS
    # Foreign exceptions give their type only: their text may hold anything.
    recent.record(
        {"kind": "t1"}, error_fields(RuntimeError(token_like)), background=True, at=NOW_WALL
    )
    assert token_like not in json.dumps(recent.to_json())
