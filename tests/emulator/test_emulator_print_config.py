"""``agentid-helper-emulator --demo --print-config``: a config the client works
with as printed, in every mode, with no keyring (its secret is a 0600 file in
the emulator's state dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_procs import daemon_pids
from tooling import SUPPORT

from agentid_emulator.directory import DEMO_BLUEPRINT_SECRET

pytestmark = pytest.mark.timeout(120)
HELPER = [sys.executable, "-m", "agentid_client"]
EMULATOR = [sys.executable, "-m", "agentid_emulator"]


def stop(pids: list[int], sig: int = signal.SIGTERM) -> None:
    for pid in pids:
        os.kill(pid, sig)


@pytest.fixture
def printed(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(config file as printed, state dir) of a running --print-config emulator."""
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    with config.open("w") as out:
        proc = subprocess.Popen(
            [*EMULATOR, "--demo", "--print-config", "--state-dir", str(state)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "agent-user" not in config.read_text():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no config printed"
            time.sleep(0.05)
        yield config, state
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_printed_config_gets_tokens_in_every_mode_without_a_keyring(
    printed: tuple[Path, Path],
) -> None:
    config, state = printed
    parsed = tomllib.loads(config.read_text())
    secret_file = Path(parsed["defaults"]["blueprint_credential"]["secret_file"])
    assert secret_file.parent == state.resolve()
    assert secret_file.read_text().strip() == DEMO_BLUEPRINT_SECRET
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert DEMO_BLUEPRINT_SECRET not in config.read_text()  # the config holds no secret
    assert Path(parsed["defaults"]["ca_bundle"]).parent == state.resolve()
    sockdir = tempfile.mkdtemp(prefix="aidc-pc-")
    sock = os.path.join(sockdir, "agentid-helper.sock")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTID_HELPER")},
        "AGENTID_HELPER_CONFIG": str(config),
        "AGENTID_HELPER_SOCKET": sock,
        # any keyring use would fail: the printed config must not need one
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    try:
        for profile in ("graph-bot", "agent-user"):
            done = subprocess.run(
                [*HELPER, "get", "--profile", profile, "--format", "json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            body = json.loads(done.stdout)
            assert body["source"] == "identity_provider" and body["access_token"].count(".") == 2
        default = subprocess.run(
            [*HELPER, "get"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert default.returncode == 0, default.stderr  # default_profile works as printed
    finally:
        stop(daemon_pids(sock))
        deadline = time.monotonic() + 10
        while daemon_pids(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop(daemon_pids(sock), signal.SIGKILL)
        shutil.rmtree(sockdir, ignore_errors=True)


def test_print_config_refuses_a_seed(tmp_path: Path) -> None:
    seed = SUPPORT / "emulator_seed_example.toml"
    done = subprocess.run(
        [*EMULATOR, "--seed", str(seed), "--print-config", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--print-config is for the demo directory" in done.stderr
    assert done.stdout == ""
