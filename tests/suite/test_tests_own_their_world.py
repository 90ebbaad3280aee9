"""The two-uid tests own their world: state another process left on the
machine does not decide whether they pass.

A real login of the test user ``agentid-alice`` (or its systemd --user
manager) leaves ``/run/user/<uid>``, which used to fail every test of
tests/client/test_trust_two_uids.py. Here that dir exists -- in a private mount
namespace only, so the machine is untouched -- while those tests run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from machine_users import ALICE, require_user
from tooling import ROOT, TESTS

TRUST_TWO_UIDS = TESTS / "client" / "test_trust_two_uids.py"
PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to test users")


def test_trust_tests_pass_while_alice_is_logged_in() -> None:
    alice = require_user(ALICE)
    uid, gid = alice.pw_uid, alice.pw_gid
    logged_in = (
        "[ -d /run/user ] || exit 98; "
        "mount -t tmpfs -o mode=0755,size=64k agentid-tests-logged-in /run/user || exit 97; "
        f"mkdir -m 0700 /run/user/{uid} && chown {uid}:{gid} /run/user/{uid} || exit 96; "
        'exec "$@"'
    )
    done = subprocess.run(
        [
            *("unshare", "--mount", "--", "sh", "-c", logged_in, "sh"),
            *PYTEST,
            *(str(TRUST_TWO_UIDS), "-k", "fallback"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]


def _holds_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_two_runs_take_turns_on_the_test_users() -> None:
    """While another run holds the test users' lock, the trust tests wait for it."""
    import fcntl
    import time

    from two_uids import TEST_USERS_LOCK

    fd = os.open(TEST_USERS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # "the other run"
        waiting = subprocess.Popen(
            [*PYTEST, str(TRUST_TWO_UIDS), "-k", "fallback_dir_is_created"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while not _holds_open(waiting.pid, TEST_USERS_LOCK):
            assert waiting.poll() is None, waiting.communicate()[0][-2000:]
            assert time.monotonic() < deadline, "the trust tests never asked for the lock"
            time.sleep(0.1)
        time.sleep(1.0)
        assert waiting.poll() is None  # it waits: nothing of the test users is touched
    finally:
        os.close(fd)  # our turn ends
    try:
        out, _ = waiting.communicate(timeout=240)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, out[-3000:]
    assert "1 passed" in out
