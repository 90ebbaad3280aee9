"""process/warmup.py: the autostarting client's profile, prepared while the daemon starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emulator_config import secret_file, write_emulator_config
from emulator_harness import Emulator

from agentid_client.contract import WARM_PROFILE_ENV
from agentid_daemon.core.errors import UnknownProfile
from agentid_daemon.core.models import AgentRef
from agentid_daemon.idp.engine import Engine
from agentid_daemon.process import warmup


@pytest.fixture(autouse=True)
def no_started_warmup() -> Iterator[None]:
    """Each test starts from a process without a warm-up (module state)."""
    warmup._started = warmup._taken = None
    yield
    warmup._started = warmup._taken = None


def test_nothing_starts_without_the_clients_variable() -> None:
    assert warmup.start_from_environ({}) is None
    assert warmup.take_engine() is None
    assert warmup.outcome() is None


def test_the_variable_is_consumed_and_its_engine_taken_once(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secret_file(emulator, tmp_path / "secret")
    config = write_emulator_config(
        tmp_path / "config.toml", emulator.info, {"secret_file": str(secret)}
    )
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(config))
    emulator.reset()
    env = {WARM_PROFILE_ENV: "app", "OTHER": "kept"}
    started = warmup.start_from_environ(env)
    assert started is not None
    assert env == {"OTHER": "kept"}  # nothing the daemon runs inherits it
    started.join(30)
    assert started.outcome == "prepared"
    assert warmup.take_engine() is started.engine
    assert warmup.outcome() == "prepared"
    assert warmup.take_engine() is None
    assert emulator.stats()["token_requests"]["total"] == 0  # clients built, no token asked
    started.engine.close()


def test_a_failure_only_ends_the_warm_up_and_names_no_detail() -> None:
    def unknown(profile: str) -> AgentRef:
        raise UnknownProfile(f"no profile {profile!r} (secret-looking detail)")

    engine = Engine()
    run = warmup.Warmup(engine, "nope", resolve=unknown)
    run.start()
    run.join(30)
    assert run.outcome == "skipped: UnknownProfile"
    engine.close()
