"""Local users that `scripts/setup.sh` creates for tests that need a second uid.

The tests run as root and drop to these users in subprocesses (setpriv), so a
trust boundary is exercised between real uids, not argued about.
"""

from __future__ import annotations

import pwd

import pytest

#: the user whose daemon and client are under test
ALICE = "agentid-alice"
#: another local user trying to reach or impersonate Alice's daemon
MALLORY = "agentid-mallory"
#: a throwaway user whose `systemd --user` manager the lifecycle tests boot
SYSTEMD_USER = "agentid-systemd"

ALL_USERS = (ALICE, MALLORY, SYSTEMD_USER)


def require_user(name: str) -> pwd.struct_passwd:
    """The user's passwd entry; a failure naming the setup step when it is missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(
            f"missing test user {name}: run scripts/setup.sh, which creates it", pytrace=False
        )
