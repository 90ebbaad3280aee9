"""``GET /v1/status`` rows of the broker's cache entries.

Status shows state, not history: one row per key that holds a token (valid,
expired but still kept, being refreshed) or whose first fetch is running. A
key whose fetches never produced a token (a one-off request with a bad
tenant, a wrong secret) gets no row: the cache still remembers its error for
the backoff, and ``recent_errors`` (recent_errors.py) reports it.

Rows: a resource token, an exchange token (T1, T2) or a managed identity's
token (the blueprint credential of ``{ managed_identity = ... }``). An
exchange or managed identity row names the profiles whose resource tokens it
serves, so that every row belongs to a profile. Rows never carry a token
value; an OBO user is a short SHA-256 prefix.

A planned refresh is never in the past: a refresh whose time has come is due
now (the cache starts it at once), so ``refresh_on`` is clamped to now rather
than read as "expired" by a client whose clock is a moment later.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from ..cache.token_cache import EntryStatus
from ..core.clock import epoch_seconds
from ..core.models import CredentialSpec, ExchangeKey, Mode, ResourceKey
from ..idp.managed_identity_key import ManagedIdentityKey

#: States of an entry whose fetch is running (with or without a token yet).
FETCHING_STATES = frozenset({"pending", "refreshing"})


def is_live(s: EntryStatus) -> bool:
    """A key worth a status row: it holds a token, or its first fetch is running."""
    return s.expires_at is not None or s.state in FETCHING_STATES


def kind_of(s: EntryStatus) -> str:
    key = s.key
    if isinstance(key, ExchangeKey):
        return key.leg
    if isinstance(key, ManagedIdentityKey):
        return "managed_identity"
    return s.label or "resource"


def _agent_of(key: Hashable) -> tuple[Any, ...] | None:
    """What an exchange token is shared by: the agent at its authority, and the credential."""
    if isinstance(key, ResourceKey | ExchangeKey):
        return (
            key.authority_host,
            key.tenant_id,
            key.blueprint_app_id,
            key.agent_identity_app_id,
            key.credential,
        )
    return None


def uses_exchange(resource: ResourceKey, exchange: ExchangeKey) -> bool:
    """Whether ``resource``'s fetch needs ``exchange``: T1 for every mode, T2 for
    AutonomousUser only (exchange_legs.py)."""
    return _agent_of(resource) == _agent_of(exchange) and (
        exchange.leg == "t1" or resource.mode == Mode.AUTONOMOUS_USER.value
    )


def credential_text(spec: CredentialSpec | None) -> str | None:
    """``kind location`` (a path, a variable name, the keyring user): never a secret."""
    if spec is None:
        return None
    return f"{spec.kind} {spec.location}".strip()


def key_fields(key: Hashable, info: Any = None) -> dict[str, Any]:
    """The identifying fields of a cache key (status rows, recent errors)."""
    fields: dict[str, Any] = {}
    if isinstance(key, ResourceKey):
        fields.update(
            kind="resource",
            profile=(info or {}).get("profile"),
            mode=key.mode,
            authority_host=key.authority_host,
            tenant_id=key.tenant_id,
            blueprint_app_id=key.blueprint_app_id,
            agent_identity_app_id=key.agent_identity_app_id,
            scopes=list(key.scopes),  # as requested (the cache key)
            user=safe_user(key.user),
            client_capabilities=list(key.client_capabilities),
            credential=credential_text(key.credential),
        )
    elif isinstance(key, ManagedIdentityKey):
        fields.update(kind="managed_identity", managed_identity=key.credential.location)
    elif isinstance(key, ExchangeKey):
        fields.update(
            kind=key.leg,
            authority_host=key.authority_host,
            tenant_id=key.tenant_id,
            blueprint_app_id=key.blueprint_app_id,
            agent_identity_app_id=key.agent_identity_app_id,
            credential=credential_text(key.credential),
        )
    else:
        fields.update(kind="resource", key=str(key))
    return fields


def status_rows(
    snapshot: Iterable[EntryStatus], now_trio: float, now_wall: float
) -> list[dict[str, Any]]:
    """The rows of ``GET /v1/status``: live keys only, each naming its profiles."""
    live = [s for s in snapshot if is_live(s)]
    served: list[tuple[ResourceKey, str]] = [
        (s.key, profile)
        for s in live
        if isinstance(s.key, ResourceKey) and isinstance(profile := s.info.get("profile"), str)
    ]
    rows = []
    for s in live:
        key = s.key
        if isinstance(key, ResourceKey):
            profile = s.info.get("profile")
            profiles = [profile] if isinstance(profile, str) else []
        elif isinstance(key, ExchangeKey):
            profiles = sorted({p for r, p in served if uses_exchange(r, key)})
        elif isinstance(key, ManagedIdentityKey):
            profiles = sorted({p for r, p in served if r.credential == key.credential})
        else:
            profiles = []
        rows.append(status_row(s, now_trio, now_wall, profiles=profiles))
    return rows


def status_row(
    s: EntryStatus, now_trio: float, now_wall: float, *, profiles: list[str] | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = key_fields(s.key, s.info)
    if isinstance(s.key, ResourceKey):
        row["granted_scope"] = s.granted_scope  # as granted: `get --format json`'s `scope`
    if s.label and not isinstance(s.key, ExchangeKey | ManagedIdentityKey):
        row["kind"] = s.label
    row["profiles"] = list(profiles or [])
    refresh_at = s.refresh_at
    if refresh_at is not None:
        refresh_at = max(refresh_at, now_trio)  # due means now, never "in the past"
    row.update(
        state=s.state,
        expires_on=epoch_seconds(s.expires_at, now_trio, now_wall),
        refresh_on=epoch_seconds(refresh_at, now_trio, now_wall),
        last_requested=epoch_seconds(s.last_requested, now_trio, now_wall),
        last_error=s.last_error,
        consecutive_failures=s.consecutive_failures,
        served_from_cache=s.served_from_cache,
        served_from_identity_provider=s.served_from_identity_provider,
    )
    return row


def safe_user(user: str | None) -> str | None:
    """UPN/object id as is; the OBO user part is already a SHA-256, shortened."""
    if user and user.startswith("sha256:"):
        return user[:23]
    return user
