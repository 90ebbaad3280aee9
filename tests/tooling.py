"""Real tools the tests drive (kubectl, git, gnome-keyring, systemd tools...).

A missing tool is a failure, never a skip: `scripts/setup.sh` installs every
one of them, so a test that cannot find one points at a broken setup.
"""

from __future__ import annotations

import shutil

import pytest


def require_tools(*tools: str) -> None:
    """Fail the calling test, naming the setup step, when a tool is not on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing tool(s) {', '.join(missing)}: run scripts/setup.sh, which installs them",
            pytrace=False,
        )
