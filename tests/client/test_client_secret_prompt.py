"""``agentid-helper secret set`` at a terminal: a hidden prompt, never an echo.

Runs the real console script on a pseudo-terminal (as a person would type at
it) with a file-backed keyring backend (tests/support/file_keyring.py).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tooling import SUPPORT

SECRET = "typed-secret~value-123"
BLUEPRINT = "b1e2c3d4-0001-4a5b-8c7d-000000000b01"
HELPER = str(Path(sys.executable).parent / "agentid-helper")


def read_until(fd: int, marker: bytes, deadline: float) -> bytes:
    seen = b""
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {marker!r}; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_secret_set_prompts_without_echo_and_stores(tmp_path: Path) -> None:
    store = tmp_path / "keyring.json"
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "file_keyring.FileKeyring",
        "PYTHONPATH": str(SUPPORT),
        "AGENTID_TEST_KEYRING_FILE": str(store),
    }
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [HELPER, "secret", "set", "--blueprint-app-id", BLUEPRINT],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    try:
        deadline = time.monotonic() + 30
        shown = read_until(leader, b"(input hidden): ", deadline)
        os.write(leader, SECRET.encode() + b"\n")
        assert proc.wait(timeout=30) == 0
        shown += read_until(leader, b"\x00never", time.monotonic() + 2)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert b"blueprint secret (input hidden): " in shown
    assert SECRET.encode() not in shown  # no echo, not printed back
    assert json.loads(store.read_text()) == {f"agentid-helper/{BLUEPRINT}": SECRET}
