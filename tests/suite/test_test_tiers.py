"""The --fast tier (scripts/test.sh --fast) leaves out exactly the slow tiers."""

from __future__ import annotations

import subprocess
import sys

from tooling import ROOT, TESTS

PYTEST_COLLECT = (sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
FAST = "not e2e and not reliability and not systemd and not two_uids"


def collected(marker_expr: str) -> list[str]:
    proc = subprocess.run(
        [*PYTEST_COLLECT, "-m", marker_expr, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_the_fast_tier_has_no_slow_test_and_keeps_the_unit_tests() -> None:
    fast = collected(FAST)
    slow_places = ("integration/", "reliability/", "test_trust_two_uids.py", "test_bench_smoke.py")
    assert not [node for node in fast if any(place in node for place in slow_places)]
    assert any(node.startswith("tests/client/test_client_cli.py::") for node in fast)
    assert any(node.startswith("tests/daemon/") for node in fast)


def test_each_slow_tier_names_what_it_needs() -> None:
    systemd = collected("systemd")
    assert systemd and all("test_systemd_user_manager.py" in node for node in systemd)
    two_uids = collected("two_uids")
    assert any("test_trust_two_uids.py" in node for node in two_uids)
    assert any("test_trust_tcp_endpoint_peers.py" in node for node in two_uids)
