"""Fault injection (through MSAL over HTTPS), its validation, and concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from emulator_harness import start_emulator
from emulator_msal_helpers import TX_SCOPE, PinnedSession, blueprint_app
from msal.exceptions import MsalServiceError

from agentid_emulator.faults import Fault, FaultSpecError, FaultState, parse_fault

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def module_emulator(
    tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path
) -> Iterator[Any]:
    """A private emulator for this module's fault tests (not the shared session one)."""
    emu = start_emulator(tmp_path_factory.mktemp("faults"), key_template=emulator_key_template)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def faulty(module_emulator: Any) -> Any:
    """The module's emulator, reset (no faults, zero counters) for each test."""
    module_emulator.reset()
    return module_emulator


def t1_attempt(emu: Any, session: PinnedSession | None = None) -> dict[str, Any]:
    return blueprint_app(emu, session).acquire_token_for_client(
        [TX_SCOPE], fmi_path=emu.agent_identity_app_id
    )


def test_429_with_retry_after(faulty: Any) -> None:
    emu = faulty
    emu.set_faults(status=429, retry_after_s=7, count=1)
    s = PinnedSession(emu.ca_bundle)
    result = t1_attempt(emu, s)
    assert "access_token" not in result
    assert s.last is not None
    assert s.last.status_code == 429
    assert s.last.headers["Retry-After"] == "7"
    assert "access_token" in t1_attempt(emu)  # count=1: the next one goes through


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(faulty: Any, status: int) -> None:
    emu = faulty
    emu.set_faults(status=status, retry_after_s=3)
    s = PinnedSession(emu.ca_bundle)
    with pytest.raises(MsalServiceError, match=f"HTTP Error: {status}"):
        t1_attempt(emu, s)  # MSAL raises for 5xx (its own error type, not requests')
    assert s.last is not None
    assert s.last.status_code == status
    assert s.last.headers["Retry-After"] == "3"
    with pytest.raises(MsalServiceError):
        t1_attempt(emu)  # no count: lasts until cleared
    emu.clear_faults()
    assert "access_token" in t1_attempt(emu)
    stats = emu.stats()["token_requests"]
    assert stats["total"] == 3
    assert stats["errors"] == 2


def test_delay(faulty: Any) -> None:
    emu = faulty
    emu.set_faults(delay_s=0.3, count=1)
    assert "access_token" in t1_attempt(emu)  # delayed, then answered normally
    assert emu.admin("GET", "/_emulator/faults")["fault"] is None
    assert '"fault":true' in emu.log_text()


def test_delay_then_status(faulty: Any) -> None:
    emu = faulty
    emu.set_faults(delay_s=0.1, status=503, count=1)
    with pytest.raises(MsalServiceError):
        t1_attempt(emu)


def test_outage_closes_the_connection(faulty: Any) -> None:
    emu = faulty
    emu.set_faults(outage=True, count=1)
    with pytest.raises(requests.ConnectionError):
        t1_attempt(emu)
    assert "access_token" in t1_attempt(emu)


def test_count(faulty: Any) -> None:
    emu = faulty
    emu.set_faults(status=500, count=2)
    for _ in range(2):
        with pytest.raises(MsalServiceError):
            t1_attempt(emu)
    assert "access_token" in t1_attempt(emu)


def test_faults_spare_discovery_and_admin(faulty: Any) -> None:
    emu = faulty
    emu.set_faults(outage=True)
    s = PinnedSession(emu.ca_bundle)
    assert s.get(f"{emu.authority}/v2.0/.well-known/openid-configuration").status_code == 200
    assert emu.stats()["token_requests"]["total"] == 0
    emu.reset()
    assert emu.admin("GET", "/_emulator/faults")["fault"] is None


def test_bad_fault_body_is_refused(emulator: Any) -> None:
    from emulator_harness import EmulatorError

    with pytest.raises(EmulatorError, match="400"):
        emulator.set_faults(status=404)


def test_concurrent_requests(faulty: Any) -> None:
    emu = faulty
    session = PinnedSession(emu.ca_bundle)
    session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64))
    app = blueprint_app(emu, session)  # one discovery, then concurrent token requests

    def one(_: int) -> bool:
        result = app.acquire_token_for_client([TX_SCOPE], fmi_path=emu.agent_identity_app_id)
        return "access_token" in result

    emu.reset()
    with ThreadPoolExecutor(max_workers=60) as pool:
        results = list(pool.map(one, range(120)))
    assert all(results)
    # MSAL may answer some from its own cache once the first token is in.
    stats = emu.stats()["token_requests"]
    assert stats["errors"] == 0
    assert 1 <= stats["total"] <= 120


def test_concurrent_raw_requests(faulty: Any) -> None:
    """60 clients at once, each with its own connection (no MSAL cache in the way)."""
    emu = faulty
    form = {
        "client_id": emu.blueprint_app_id,
        "client_secret": emu.blueprint_secret,
        "grant_type": "client_credentials",
        "scope": TX_SCOPE,
        "fmi_path": emu.agent_identity_app_id,
    }

    def one(_: int) -> int:
        with PinnedSession(emu.ca_bundle) as s:
            return s.post(emu.token_endpoint, data=form).status_code

    with ThreadPoolExecutor(max_workers=60) as pool:
        statuses = list(pool.map(one, range(60)))
    assert statuses == [200] * 60
    assert emu.stats()["token_requests"]["by_leg"]["t1"] == 60


# -- sans-IO parts -------------------------------------------------------------
@pytest.mark.parametrize(
    "body, message",
    [
        ({"status": 404}, "status"),
        ({"status": True}, "status"),
        ({"delay_s": -1}, "delay_s"),
        ({"delay_s": "1"}, "delay_s"),
        ({"count": 0, "status": 500}, "count"),
        ({"outage": "yes"}, "outage"),
        ({}, "at least one"),
        ({"bogus": 1}, "unknown"),
        ({"status": 429, "retry_after_s": -5}, "retry_after_s"),
        ([], "object"),
    ],
)
def test_parse_fault_rejects(body: Any, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_fault(body)


def test_fault_state_count() -> None:
    state = FaultState()
    state.set(parse_fault({"status": 503, "count": 2}))
    assert state.take() == Fault(status=503, count=2)
    assert state.current() == {**Fault(status=503, count=2).to_json(), "remaining": 1}
    assert state.take() is not None
    assert state.take() is None
    state.set(parse_fault({"outage": True}))
    for _ in range(5):
        assert state.take() is not None
    state.clear()
    assert state.take() is None
