"""The test users named in tests/support/machine_users.py are the ones setup creates."""

from __future__ import annotations

import re

from machine_users import ALL_USERS, require_user
from tooling import ROOT

SETUP = ROOT / "scripts" / "setup.sh"


def test_setup_creates_exactly_the_named_users() -> None:
    match = re.search(r"^for user in (.+); do$", SETUP.read_text(), re.MULTILINE)
    assert match is not None
    assert tuple(match.group(1).split()) == ALL_USERS


def test_each_user_exists_on_this_machine() -> None:
    for name in ALL_USERS:
        assert require_user(name).pw_uid > 0
