"""A pytest plugin (``-p tier_report``) that prints each collected test's tiers.

tests/suite/test_test_tiers.py checks every tier from one listing: the running
session's own (tests/conftest.py keeps every collected test's tiers, before ``-m``
deselects any, under :data:`COLLECTED_TIERS`) when it collected the whole tree,
else one collection of the tree with this plugin.
"""

from __future__ import annotations

import pytest

#: The slow tiers (tests/conftest.py's ``tiers_of``); the --fast tier is none of them.
SLOW_TIERS = ("e2e", "reliability", "systemd", "two_uids")
PREFIX = "TIERS "
#: nodeid -> slow tiers of every test the session collected (before deselection).
COLLECTED_TIERS = pytest.StashKey[dict[str, set[str]]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        marks = sorted({m.name for m in item.iter_markers() if m.name in SLOW_TIERS})
        print(f"{PREFIX}{item.nodeid} {','.join(marks)}")
