"""Fault matrix: a private emulator and daemon per test, faults injected in the emulator.

Lifetimes are short (6-8 s) so that "cached while valid, clear error after
expiry, recovery at the next backoff step" fits in well under 20 s per test.
Requests pass ``min_validity_s = 0`` (``--min-validity 0``): the default 300 s
is longer than these lifetimes. Waits are bounded polls; the only time-based
assertion (429 + Retry-After) checks a window that a slow machine can only
shrink, never violate.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from emulator_harness import Emulator
from rel_stack import HttpResult, Stack, describe, poll_until
from tls_certs import make_server_tls

from agentid_client.failures import EXIT_IDP

LIFETIME_S = 8
# Backoff is min(300, 2**(n-1)) s with equal jitter: after the few failures a
# test causes, the next attempt comes within 8 s; plus slack for a busy machine.
RECOVERY_BOUND_S = 12.0

EmulatorFactory = Callable[..., Emulator]
StackFactory = Callable[..., Stack]


def _token(stack: Stack, profile: str = "app", **options: Any) -> HttpResult:
    return stack.token(profile, min_validity_s=0, **options)


def _ok(resp: HttpResult) -> dict[str, Any]:
    assert resp.status == 200, (resp.status, resp.body[:400])
    body = resp.json()
    assert body["access_token"].count(".") == 2
    return body


def _error(resp: HttpResult, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body[:400])
    body = resp.json()
    assert body["error"] == code, body
    assert body["error_description"], body
    return body


def _recovers(stack: Stack, profile: str = "app") -> dict[str, Any]:
    """After a fault is cleared, a token flows again within the backoff bound."""
    resp = poll_until(
        lambda: (r := _token(stack, profile)).status == 200 and r,
        timeout=RECOVERY_BOUND_S,
        what="a token after the fault cleared",
    )
    return _ok(resp)


def _client_get(stack: Stack, profile: str = "app") -> Any:
    return stack.client(
        "get", "--profile", profile, "--min-validity", "0", "--format", "json", timeout=30
    )


@pytest.fixture
def short_emulator(emulator_factory: EmulatorFactory) -> Emulator:
    return emulator_factory(token_lifetime_s=LIFETIME_S)


def test_outage_cache_while_valid_clear_error_after_expiry_then_recovery(
    short_emulator: Emulator, stack_factory: StackFactory
) -> None:
    stack = stack_factory(short_emulator, idle_timeout_s=60)
    first = _ok(_token(stack))
    assert first["source"] == "identity_provider"
    short_emulator.set_faults(outage=True)
    # Served from the cache while the token is valid, refresh failures or not.
    for _ in range(3):
        cached = _ok(_token(stack))
        assert cached["source"] == "cache"
    # After expiry: a clear, transient error (503), and exit 4 from the client.
    resp = poll_until(
        lambda: (r := _token(stack)).status != 200 and r,
        timeout=LIFETIME_S + 5,
        what="the cached token to expire",
    )
    err = _error(resp, 503, "identity_provider_unavailable")
    assert (
        "connect" in err["error_description"] or "identity provider" in err["error_description"]
    ), err
    proc = _client_get(stack)
    assert proc.returncode == EXIT_IDP, describe(proc)
    assert proc.stderr.startswith("agentid-helper: error: ")
    assert proc.stdout == ""
    short_emulator.clear_faults()
    fresh = _recovers(stack)  # from a background retry ("cache") or this request
    assert fresh["access_token"] != first["access_token"]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429},
        {"outage": True},
    ],
    ids=["500", "503", "429-no-retry-after", "outage"],
)
def test_failure_without_cache_is_clear_and_recovers(
    short_emulator: Emulator, stack_factory: StackFactory, fault: dict[str, Any]
) -> None:
    stack = stack_factory(short_emulator)
    short_emulator.set_faults(**fault)
    err = _error(_token(stack), 503, "identity_provider_unavailable")
    assert "access_token" not in err
    proc = _client_get(stack)
    assert proc.returncode == EXIT_IDP, describe(proc)
    first_line = proc.stderr.splitlines()[0]
    assert first_line.startswith("agentid-helper: error: "), first_line
    assert len(first_line) > 30, first_line
    short_emulator.clear_faults()
    _recovers(stack)


def test_429_retry_after_is_honoured(short_emulator: Emulator, stack_factory: StackFactory) -> None:
    retry_after = 4
    stack = stack_factory(short_emulator)
    short_emulator.reset()
    short_emulator.set_faults(status=429, retry_after_s=retry_after, count=1)
    sent = time.monotonic()
    resp = _token(stack)
    _error(resp, 503, "identity_provider_unavailable")
    assert int(resp.headers.get("retry-after", "0")) >= 1, resp.headers
    seen = short_emulator.stats()["token_requests"]["total"]
    assert seen == 1
    # The daemon got the 429 after `sent`, so [now, sent + N) lies inside the
    # quiet period whatever the machine's speed. Clients keep asking meanwhile.
    quiet_until = sent + retry_after - 0.3
    while time.monotonic() < quiet_until:
        again = _token(stack)
        assert again.status == 503, (again.status, again.body[:300])
        assert short_emulator.stats()["token_requests"]["total"] == seen, (
            "a token request reached the identity provider inside the Retry-After period"
        )
        time.sleep(0.2)
    # count=1: the retry after the period succeeds (background retry or the next request).
    _recovers(stack)


def test_delay_refresh_while_cache_serves(
    short_emulator: Emulator, stack_factory: StackFactory
) -> None:
    stack = stack_factory(short_emulator)
    first = _ok(_token(stack))
    short_emulator.set_faults(delay_s=2.0)
    results: dict[str, HttpResult] = {}
    slow = threading.Thread(
        target=lambda: results.update(forced=_token(stack, force_refresh=True)), daemon=True
    )
    slow.start()
    try:
        for _ in range(3):
            body = _ok(_token(stack))
            assert body["source"] == "cache"
            assert body["access_token"] == first["access_token"]
    finally:
        slow.join(timeout=30)
    assert not slow.is_alive()
    forced = _ok(results["forced"])
    assert forced["source"] == "identity_provider"
    short_emulator.clear_faults()


def _assert_tls_message(text: str) -> None:
    lowered = text.lower()
    assert "tls" in lowered or "certificate" in lowered, text


def test_wrong_ca_bundle_is_a_clear_tls_error(
    emulator: Emulator, stack_factory: StackFactory, tmp_path: Path
) -> None:
    wrong = make_server_tls(tmp_path / "other-ca")
    stack = stack_factory(emulator, ca_bundle=str(wrong.ca_file))
    resp = _token(stack)
    assert resp.status in (502, 503), (resp.status, resp.body[:300])
    body = resp.json()
    assert body["error"].startswith("identity_provider_"), body
    _assert_tls_message(body["error_description"] + " " + str(body.get("hint")))
    proc = _client_get(stack)
    assert proc.returncode == EXIT_IDP, describe(proc)
    _assert_tls_message(proc.stderr.splitlines()[0])
    assert proc.stdout == ""


def test_wrong_ca_after_reload_cache_flows_then_clear_error(
    short_emulator: Emulator, stack_factory: StackFactory, tmp_path: Path
) -> None:
    stack = stack_factory(short_emulator, idle_timeout_s=60)
    first = _ok(_token(stack))
    wrong = make_server_tls(tmp_path / "other-ca")
    stack.write_config(idle_timeout_s=60, ca_bundle=str(wrong.ca_file))
    stack.daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    poll_until(
        lambda: "configuration reloaded" in stack.daemon.log_text(),
        timeout=10,
        what="the daemon to reload its configuration",
    )
    for _ in range(3):
        cached = _ok(_token(stack))
        assert cached["source"] == "cache"
        assert cached["access_token"] == first["access_token"]
    resp = poll_until(
        lambda: (r := _token(stack)).status != 200 and r,
        timeout=LIFETIME_S + 5,
        what="the cached token to expire",
    )
    # A TLS verification failure is not transient: the daemon answers 502.
    assert resp.status in (502, 503), (resp.status, resp.body[:300])
    body = resp.json()
    assert body["error"].startswith("identity_provider_"), body
    assert body["error_description"], body
    _assert_tls_message(body["error_description"])
    proc = _client_get(stack)
    assert proc.returncode == EXIT_IDP, describe(proc)
    _assert_tls_message(proc.stderr.splitlines()[0])
    # Putting the right CA back heals it on the next request after the backoff.
    stack.write_config(idle_timeout_s=60)
    stack.daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert _recovers(stack)["access_token"] != first["access_token"]
    stack.daemon.assert_log_free_of(
        [first["access_token"], short_emulator.blueprint_secret, stack.obo_user_token]
    )
