"""Real tools the tests drive (kubectl, git, gnome-keyring, systemd tools...).

A missing tool is a failure, never a skip: `scripts/setup.sh` installs every
one of them, so a test that cannot find one points at a broken setup.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: tests/support: the helpers, on ``sys.path`` by pyproject's pytest ``pythonpath``;
#: the helper scripts tests run by path live here too.
SUPPORT = Path(__file__).resolve().parent
#: The checkout (the directory holding pyproject.toml).
ROOT = SUPPORT.parents[1]
#: The test tree (its folders mirror the packages).
TESTS = ROOT / "tests"


def require_tools(*tools: str) -> None:
    """Fail the calling test, naming the setup step, when a tool is not on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing tool(s) {', '.join(missing)}: run scripts/setup.sh, which installs them",
            pytrace=False,
        )


EMULATOR = ROOT / "emulator"


def build_wheel(directory: Path, source: Path = ROOT) -> Path:
    """The project's wheel (or, with ``source=EMULATOR``, the emulator's), built
    offline into ``directory`` (hatchling is in the test extras, so no build
    isolation and no index are needed)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(directory),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    name = "agentid_helper_emulator" if source == EMULATOR else "agentid_helper"
    (wheel,) = directory.glob(f"{name}-*.whl")
    return wheel
