"""A fixture for tests that write credential files: the umask a careful user has.

The daemon refuses a secret file readable by group or others (file_trust),
so tests that write one create it as ``umask 077`` would: mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def private_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)
