"""Engine.prepare: the first call's MSAL clients built ahead, no token requested.

An autostarted daemon's engine host (process/engine_host.py) prepares the
profile its client asks for while the daemon imports the rest of itself: the
discovery round trips happen then, and the legs that follow reuse those clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from emulator_harness import Emulator

from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.core.models import AgentRef, CredentialSpec
from agentid_daemon.idp.engine import Engine

SECRET_VAR = "AGENTID_TEST_PREPARE_SECRET"
GRAPH = ("https://graph.microsoft.com/.default",)


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(connect_timeout_s=5, read_timeout_s=10)
    try:
        yield eng
    finally:
        eng.close()


def _agent(emu: Emulator) -> AgentRef:
    return AgentRef(
        authority_host=emu.authority_host,
        tenant_id=emu.tenant_id,
        blueprint_app_id=emu.blueprint_app_id,
        agent_identity_app_id=emu.agent_identity_app_id,
        credential=CredentialSpec("env", SECRET_VAR),
        ca_bundle=emu.ca_bundle,
    )


def _discoveries(emu: Emulator, since: int) -> int:
    lines = emu.log_text().splitlines()[since:]
    return sum(
        1
        for line in lines
        if line.startswith("{")
        and json.loads(line).get("path", "").endswith("openid-configuration")
    )


def test_prepare_discovers_once_per_client_and_requests_no_token(
    emulator: Emulator, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VAR, emulator.blueprint_secret)
    emulator.reset()
    start = len(emulator.log_text().splitlines())
    agent = _agent(emulator)
    engine.prepare(agent)
    assert emulator.stats()["token_requests"]["total"] == 0
    assert _discoveries(emulator, start) == 2  # the blueprint's client and the agent's
    t1 = engine.acquire_t1(agent)
    engine.acquire_autonomous_app(agent, t1.access_token, GRAPH)
    assert _discoveries(emulator, start) == 2  # the legs used the prepared clients
    assert emulator.stats()["token_requests"]["total"] == 2


def test_prepare_raises_what_the_first_leg_would(
    emulator: Emulator, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_VAR, raising=False)
    with pytest.raises(ConfigurationError):
        engine.prepare(_agent(emulator))
    with pytest.raises(ConfigurationError):
        engine.acquire_t1(_agent(emulator))


def test_a_managed_identity_blueprint_prepares_only_the_agent_client(
    emulator: Emulator, engine: Engine
) -> None:
    """Its T1 client needs the managed identity's token, fetched with the first request."""
    emulator.reset()
    start = len(emulator.log_text().splitlines())
    agent = AgentRef(
        authority_host=emulator.authority_host,
        tenant_id=emulator.tenant_id,
        blueprint_app_id=emulator.blueprint_app_id,
        agent_identity_app_id=emulator.agent_identity_app_id,
        credential=CredentialSpec("managed_identity", "system"),
        ca_bundle=emulator.ca_bundle,
    )
    engine.prepare(agent)
    assert _discoveries(emulator, start) == 1
    assert emulator.stats()["token_requests"]["total"] == 0
