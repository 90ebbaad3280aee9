"""What every test that acts as the machine's test users shares.

The trust-boundary tests run as root and drop to ``agentid-alice`` (the
victim) and ``agentid-mallory`` (the other uid) with ``setpriv``. They share:

- :func:`as_user`: the argv prefix that runs a command as a test user;
  ``hide_run_user`` gives it a private, empty ``/run/user`` (a mount
  namespace of its own), so a test user's real runtime directory on the
  machine, say from a login, neither breaks nor leaks into the test;
- :func:`test_users_turn`: a module-wide machine lock (:data:`TEST_USERS_LOCK`):
  one test run at a time acts as the test users, since two runs would share
  their homes, processes and ports;
- :func:`user_python`: a Python the test users can execute (tests/support/user_venv.py).

The fixtures are tests/conftest.py's; a module takes its turn with::

    pytestmark = pytest.mark.usefixtures("test_users_turn")
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_user_manager import machine_lock
from user_venv import make_user_venv

#: Taken for a whole module: one run at a time acts as the test users.
TEST_USERS_LOCK = Path("/run/lock/agentid-helper-tests-two-uids.lock")

# Runs "$@" where /run/user is an empty tmpfs of this process tree alone
# (unshare's default propagation is private: nothing leaks to the machine).
_HIDE_RUN_USER = (
    "if [ -d /run/user ]; then "
    "mount -t tmpfs -o mode=0755,size=64k agentid-tests-run-user /run/user || exit 97; "
    'fi; exec "$@"'
)


def as_user(user: str, *, hide_run_user: bool = False) -> list[str]:
    """The argv prefix that runs a command as ``user`` (primary group, its groups)."""
    drop = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"]
    if not hide_run_user:
        return drop
    return ["unshare", "--mount", "--", "sh", "-c", _HIDE_RUN_USER, "sh", *drop]


@pytest.fixture(scope="module")
def test_users_turn() -> Iterator[None]:
    """Hold :data:`TEST_USERS_LOCK` while the module runs."""
    with machine_lock(TEST_USERS_LOCK):
        yield


@pytest.fixture(scope="module")
def user_python() -> Iterator[Path]:
    """``bin/python`` of a venv the test users can run, with this checkout's packages."""
    directory = Path(tempfile.mkdtemp(prefix="aidc-venv-"))
    try:
        yield make_user_venv(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
