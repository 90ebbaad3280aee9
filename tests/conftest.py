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

The ``Emulator`` class and ``start_emulator`` live in tests/emulator_harness.py
(import them from there: ``import conftest`` is ambiguous once another
conftest.py exists); they are re-exported here for compatibility.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_harness import Emulator, EmulatorError, start_emulator

__all__ = ["Emulator", "EmulatorError", "start_emulator"]


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
def emulator(tmp_path_factory: pytest.TempPathFactory,
             emulator_key_template: Path) -> Iterator[Emulator]:
    """One ``--demo`` emulator for the session. Call ``reset()`` before counting."""
    emu = start_emulator(tmp_path_factory.mktemp("emulator"), key_template=emulator_key_template)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator_factory(tmp_path: Path,
                     emulator_key_template: Path) -> Iterator[Callable[..., Emulator]]:
    """Start private emulators (``emulator_factory(token_lifetime_s=10)``)."""
    started: list[Emulator] = []

    def factory(**options: Any) -> Emulator:
        emu = start_emulator(tmp_path / f"emulator{len(started)}",
                             key_template=emulator_key_template, **options)
        started.append(emu)
        return emu

    try:
        yield factory
    finally:
        for emu in started:
            with contextlib.suppress(Exception):
                emu.stop()


@pytest.fixture
def fresh_emulator(request: pytest.FixtureRequest,
                   emulator_factory: Callable[..., Emulator]) -> Emulator:
    """A private ``--demo`` emulator for one test (faults, counters of its own).

    Options by indirect parametrisation::

        @pytest.mark.parametrize("fresh_emulator", [{"token_lifetime_s": 10}], indirect=True)
    """
    return emulator_factory(**dict(getattr(request, "param", None) or {}))
