"""A pytest plugin (``-p tier_report``) that prints each collected test's tiers.

tests/suite/test_test_tiers.py collects the tree once with it and checks every
tier from that one listing (one collection instead of one per ``-m`` expression).
"""

from __future__ import annotations

import pytest

#: The slow tiers (tests/conftest.py's ``tiers_of``); the --fast tier is none of them.
SLOW_TIERS = ("e2e", "reliability", "systemd", "two_uids")
PREFIX = "TIERS "


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        marks = sorted({m.name for m in item.iter_markers() if m.name in SLOW_TIERS})
        print(f"{PREFIX}{item.nodeid} {','.join(marks)}")
