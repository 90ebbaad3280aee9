"""The two-uid tests own their world: state another process left on the
machine does not decide whether they pass.

A real login of the test user ``agentid-alice`` (or its systemd --user
manager) leaves ``/run/user/<uid>``, which used to fail every test of
tests/test_trust_two_uids.py. Here that dir exists -- in a private mount
namespace only, so the machine is untouched -- while those tests run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from machine_users import ALICE, require_user

TESTS = Path(__file__).resolve().parent

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
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(str(TESTS / "test_trust_two_uids.py"), "-k", "fallback"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=TESTS.parent,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]
