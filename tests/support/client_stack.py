"""A real client + autostarted daemon on the emulator, for end-to-end tests.

``write_config`` writes the client tests' config.toml for the emulator
(through tests/support/emulator_config.py: profiles ``app``, ``user`` and ``obo``, git
host ``git.example.test``);
``client_stack`` yields an :class:`Env` and stops every daemon started for its
private socket at exit (by pid, found through the daemon's environment).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon_procs import daemon_pids
from emulator_config import secret_file, write_emulator_config
from log_audit import scan_tree
from rel_stack import poll_until

HELPER = [sys.executable, "-m", "agentid_client"]


def write_config(emu: Any, directory: Path, secret: str | None = None) -> Path:
    """Profiles app (default), user and obo; git host git.example.test -> app."""
    secret_path = secret_file(emu, directory / "bp.secret", secret)
    return write_emulator_config(
        directory / "config.toml",
        emu.info,
        {"secret_file": str(secret_path)},
        git={"git.example.test": "app"},
    )


class Env:
    def __init__(self, emu: Any, workdir: Path, sockdir: str, secret: str | None = None):
        self.sock = os.path.join(sockdir, "agentid-helper.sock")
        self.config = write_config(emu, workdir, secret)
        self.env = dict(
            os.environ, AGENTID_HELPER_SOCKET=self.sock, AGENTID_HELPER_CONFIG=str(self.config)
        )
        self.env.pop("AGENTID_HELPER_NO_AUTOSTART", None)

    def run(
        self, *args: str, stdin: str = "", timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HELPER, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=timeout,
        )

    def wait_until_ready(self, timeout: float = 20) -> None:
        """Until the autostarted daemon logged ``daemon ready``: a first call may be
        answered by its engine host before the daemon listens (process/first_answer.py)."""
        log = Path(self.sock).with_name("agentid-helperd.log")

        def ready() -> bool:
            with contextlib.suppress(FileNotFoundError):
                return '"event": "daemon ready"' in log.read_text()
            return False

        poll_until(ready, timeout=timeout, interval=0.02, what=f"`daemon ready` in {log}")


@contextlib.contextmanager
def client_stack(emu: Any, workdir: Path, secret: str | None = None) -> Iterator[Env]:
    """An :class:`Env` whose daemons (autostarted by the client) are stopped at exit."""
    sockdir = tempfile.mkdtemp(prefix="aidc-e2e-")  # short: AF_UNIX path limit
    env = Env(emu, workdir, sockdir, secret)
    try:
        yield env
    finally:
        for pid in daemon_pids(env.sock):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while daemon_pids(env.sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in daemon_pids(env.sock):
            os.kill(pid, signal.SIGKILL)
        scan_tree(Path(sockdir))  # session-wide log audit
        shutil.rmtree(sockdir, ignore_errors=True)
