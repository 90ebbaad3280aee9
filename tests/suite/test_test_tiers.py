"""The --fast tier (scripts/test.sh --fast) leaves out exactly the slow tiers,
and each slow tier holds what it says: tests/conftest.py's ``tiers_of`` rules."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tier_report import COLLECTED_TIERS, PREFIX
from tooling import ROOT, SUPPORT, TESTS

PYTEST_COLLECT = (sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")


def _test_files() -> set[str]:
    apps = TESTS / "integration" / "sdk_apps"
    return {
        str(path.relative_to(ROOT))
        for path in TESTS.rglob("test_*.py")
        if apps not in path.parents and path.parent != SUPPORT
    }


@pytest.fixture(scope="module")
def tiers(request: pytest.FixtureRequest) -> dict[str, set[str]]:
    """Every test of the tree -> its slow tiers: this session's, when it collected
    the whole tree (the --fast run and the full run do), else one collection."""
    seen = request.config.stash.get(COLLECTED_TIERS, {})
    if {node.split("::", 1)[0] for node in seen} >= _test_files():
        return seen
    env = {**os.environ, "PYTHONPATH": str(SUPPORT)}
    proc = subprocess.run(
        [*PYTEST_COLLECT, "-p", "tier_report", str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    listing = {}
    for line in proc.stdout.splitlines():
        if line.startswith(PREFIX):
            node, _, marks = line[len(PREFIX) :].rpartition(" ")
            listing[node] = set(filter(None, marks.split(",")))
    assert len(listing) > 1000
    return listing


def _in(tiers: dict[str, set[str]], tier: str) -> list[str]:
    return [node for node, marks in tiers.items() if tier in marks]


def test_the_fast_tier_has_no_slow_test_and_keeps_the_unit_tests(
    tiers: dict[str, set[str]],
) -> None:
    fast = [node for node, marks in tiers.items() if not marks]
    slow_places = ("integration/", "reliability/", "test_trust_two_uids.py", "test_bench_smoke.py")
    assert not [node for node in fast if any(place in node for place in slow_places)]
    assert any(node.startswith("tests/client/test_client_cli.py::") for node in fast)
    assert any(node.startswith("tests/daemon/") for node in fast)
    assert any(node.startswith("tests/emulator/test_emulator_legs.py::") for node in fast)


def test_processes_over_https_and_whole_stacks_are_e2e(tiers: dict[str, set[str]]) -> None:
    e2e = set(_in(tiers, "e2e"))
    # An emulator process (the session's, a module's own, a private one).
    assert any(node.startswith("tests/daemon/idp/test_engine.py::") for node in e2e)
    assert any(node.startswith("tests/emulator/test_emulator_graph.py::") for node in e2e)
    # A real client with an autostarted daemon (client_stack.py).
    assert all(
        node in e2e for node in tiers if node.startswith("tests/client/test_operate_daemon.py::")
    )
    # A test that starts the daemon itself says so.
    assert "tests/daemon/test_app.py::test_health_and_sigterm" in e2e
    assert (
        "tests/docs/test_readme_quick_start.py::test_the_quick_start_gets_a_token_in_a_fresh_venv"
        in e2e
    )


def test_each_slow_tier_names_what_it_needs(tiers: dict[str, set[str]]) -> None:
    systemd = _in(tiers, "systemd")
    assert systemd and all("test_systemd_user_manager.py" in node for node in systemd)
    two_uids = _in(tiers, "two_uids")
    assert any("test_trust_two_uids.py" in node for node in two_uids)
    assert any("test_trust_tcp_endpoint_peers.py" in node for node in two_uids)
    reliability = _in(tiers, "reliability")
    assert reliability and all(node.startswith("tests/reliability/") for node in reliability)
