"""Fixtures of the reliability suite: live stacks (emulator + daemon subprocess).

- ``live_stack`` (module scope): one daemon on the session emulator, shared by
  a whole module (the fuzzers hammer one process on purpose).
- ``stack_factory`` (function scope): ``stack_factory(emu, idle_timeout_s=...,
  ca_bundle=...)`` starts a daemon for a private emulator (from
  ``emulator_factory``); every daemon is stopped at teardown.

Helpers live in tests/support/rel_stack.py (import it by name; never ``import conftest``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from emulator_harness import Emulator
from rel_stack import Stack, start_stack


@pytest.fixture(scope="module")
def live_stack(emulator: Emulator) -> Iterator[Stack]:
    with start_stack(emulator) as stack:
        yield stack


@pytest.fixture
def stack_factory() -> Iterator[Callable[..., Stack]]:
    with contextlib.ExitStack() as stacks:

        def factory(emu: Emulator, **options: Any) -> Stack:
            return stacks.enter_context(start_stack(emu, **options))

        yield factory
