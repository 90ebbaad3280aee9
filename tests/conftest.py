"""Shared test fixtures: the local Entra emulator as a subprocess.

``emulator`` (session scope) is one ``--demo`` instance for the whole run;
tests that count requests call ``emulator.reset()`` first. ``emulator_factory``
starts private instances (faults, short lifetimes, seeds) stopped at teardown::

    def test_short(emulator_factory):
        emu = emulator_factory(token_lifetime_s=10)
        emu.set_faults(status=503, count=1)

Extra keyword arguments of the factory become CLI flags
(``token_lifetime_s=10`` -> ``--token-lifetime-s 10``; ``seed=path`` ->
``--seed path`` instead of ``--demo``; ``True`` -> a bare flag).

The ``Emulator`` class and ``start_emulator`` live in tests/support/emulator_harness.py
(import them from there: ``import conftest`` is ambiguous once another
conftest.py exists); they are re-exported here for compatibility. Every helper
lives in tests/support, on ``sys.path`` through pyproject's pytest ``pythonpath``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_fakes import fake_daemon
from emulator_harness import Emulator, EmulatorError, start_emulator
from two_uids import test_users_turn, user_python

# fake_daemon: the client tests' stand-in daemon (tests/support/client_fakes.py);
# test_users_turn, user_python: for the tests acting as the test users (tests/support/two_uids.py).
__all__ = [
    "Emulator",
    "EmulatorError",
    "fake_daemon",
    "start_emulator",
    "test_users_turn",
    "user_python",
]


@pytest.fixture(scope="session")
def emulator_key_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Emulator key material generated once per session, copied into each instance."""
    from agentid_emulator.certs import ensure_key_material
    from agentid_emulator.cli import demo_certificate

    template = tmp_path_factory.mktemp("emulator-keys")
    ensure_key_material(template)
    demo_certificate(template)
    return template


@pytest.fixture(scope="session")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path
) -> Iterator[Emulator]:
    """One ``--demo`` emulator for the session. Call ``reset()`` before counting."""
    emu = start_emulator(tmp_path_factory.mktemp("emulator"), key_template=emulator_key_template)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator_factory(
    tmp_path: Path, emulator_key_template: Path
) -> Iterator[Callable[..., Emulator]]:
    """Start private emulators (``emulator_factory(token_lifetime_s=10)``)."""
    started: list[Emulator] = []

    def factory(**options: Any) -> Emulator:
        emu = start_emulator(
            tmp_path / f"emulator{len(started)}", key_template=emulator_key_template, **options
        )
        started.append(emu)
        return emu

    try:
        yield factory
    finally:
        for emu in started:
            with contextlib.suppress(Exception):
                emu.stop()


@pytest.fixture
def fresh_emulator(
    request: pytest.FixtureRequest, emulator_factory: Callable[..., Emulator]
) -> Emulator:
    """A private ``--demo`` emulator for one test (faults, counters of its own).

    Options by indirect parametrisation::

        @pytest.mark.parametrize("fresh_emulator", [{"token_lifetime_s": 10}], indirect=True)
    """
    return emulator_factory(**dict(getattr(request, "param", None) or {}))


@pytest.fixture
def pasted_token(emulator: Any) -> str:
    """A real user token (a JWT of over 1000 characters), as a user might paste
    it by mistake where a name or id belongs: error texts must not echo it."""
    token = emulator.user_token(emulator.user_upn)
    assert token.startswith("eyJ") and len(token) > 1000
    return token


# --- test tiers (markers; `scripts/test.sh --fast` runs the unit tier) ---------

#: Fixtures and helpers that mean a test acts as the machine's real test users.
_TWO_UID_FIXTURES = frozenset({"test_users_turn", "user_python"})
_TWO_UID_HELPERS = frozenset({"require_user", "as_user", "test_users_turn"})
#: Files outside tests/integration that run the whole product as a user would:
#: the README's quick start in a fresh venv (a docs test, so under tests/docs).
_WHOLE_STACK_FILES = frozenset({"test_readme_quick_start.py"})


def tiers_of(item: pytest.Item) -> set[str]:
    """The slow tiers a collected test belongs to, from what it really uses:
    ``e2e`` (tests/integration, ``*_e2e`` files, or a whole stack elsewhere),
    ``reliability`` (tests/reliability), ``systemd`` (a booted user manager),
    ``two_uids`` (the machine's test users)."""
    parts = item.path.parts
    names = set(vars(item.module)) if isinstance(item, pytest.Function) and item.module else set()
    tiers = set()
    if "integration" in parts or "e2e" in item.path.stem or item.path.name in _WHOLE_STACK_FILES:
        tiers.add("e2e")
    if "reliability" in parts:
        tiers.add("reliability")
    if "UserManager" in names:  # tests/support/systemd_user_manager.py boots one
        tiers.add("systemd")
    if _TWO_UID_FIXTURES & set(getattr(item, "fixturenames", ())) or _TWO_UID_HELPERS & names:
        tiers.add("two_uids")
    return tiers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for tier in sorted(tiers_of(item)):
            item.add_marker(tier)


# --- session-wide log audit (tests/support/log_audit.py) ------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Scan what each test phase printed or logged for tokens and secrets."""
    from log_audit import AUDIT

    exempt_raw_log = "raw_log_records_hold_planted_secrets" in report.keywords
    for title, text in report.sections:
        if exempt_raw_log and title.startswith("Captured log"):
            # pytest's own handler sees the stdlib record *before* the daemon's
            # redaction; those tests plant tokens on purpose to prove redaction.
            continue
        AUDIT.scanned_sections += 1
        AUDIT.scan_text(text, f"{report.nodeid} [{title}]")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan the logs the run left behind; any finding fails the run."""
    from log_audit import AUDIT

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        with contextlib.suppress(OSError, ValueError):
            AUDIT.scan_tree(factory.getbasetemp())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"log audit: {AUDIT.scanned_files} log files and {AUDIT.scanned_sections} "
            f"captured outputs scanned, {len(AUDIT.findings)} token/secret findings"
        )
        for finding in AUDIT.findings[:50]:
            reporter.write_line(f"log audit: LEAK {finding}", red=True)
    if AUDIT.findings and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
