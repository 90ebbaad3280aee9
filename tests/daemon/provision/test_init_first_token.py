"""init's first-token wait: the real engine against the emulator, for an agent
identity the directory does not know (AADSTS700016, as for one not replicated
yet): retried with the doubling pause within the budget, then one error that
says how long it waited and keeps the directory's code and correlation id."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from emulator_config import write_emulator_config

from agentid_daemon.config.loader import load_config
from agentid_daemon.core.errors import IdentityProviderError
from agentid_daemon.idp.engine import Engine
from agentid_daemon.provision.init_flow import wait_for_first_token


def test_the_wait_retries_not_found_then_says_how_long_it_waited(
    emulator: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "bp.secret"
    secret.write_text(emulator.blueprint_secret)
    secret.chmod(0o600)
    config = write_emulator_config(
        tmp_path / "config.toml", emulator.info, {"secret_file": str(secret)}
    )
    unknown = str(uuid.uuid4())
    request = load_config(config).resolve({"profile": "app", "agent_identity_app_id": unknown})
    said: list[str] = []
    pauses: list[float] = []
    engine = Engine()
    try:
        with pytest.raises(IdentityProviderError) as info:
            wait_for_first_token(engine, request, said.append, budget_s=3.0, sleep=pauses.append)
    finally:
        engine.close()
    assert 700016 in info.value.aadsts_codes
    assert "s for Entra to replicate the new blueprint and agent" in info.value.description
    assert info.value.hint and "agentid-helper get --profile app" in info.value.hint
    # Doubling pauses; the next (4 s) would pass the 3 s budget (the pauses are not
    # slept here, so only a very slow emulator makes the 2 s one pass it too).
    assert len(pauses) >= 2 and pauses == [0.5, 1.0, 2.0][: len(pauses)]
    assert said == ["waiting for Entra to replicate the new objects (up to 3 s)..."]
