"""A Python the dropped test users can run, with this checkout's packages.

The project's ``.venv`` may be built on an interpreter under a directory the
test users cannot enter (e.g. pyenv in /root): a process they run could not
exec ``sys.executable`` again, and autostart does exactly that. So tests that
drop to another uid run a venv made from the system interpreter, in a
directory everyone can traverse, whose one ``.pth`` file adds the project
venv's site-packages (``addsitedir``: its editable-install ``.pth`` applies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"


def make_user_venv(directory: Path) -> Path:
    """Create the venv in ``directory`` (made 0755); returns its ``bin/python``."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing: install Debian's python3 (scripts/setup.sh)")
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if tuple(map(int, version)) != sys.version_info[:2]:
        pytest.fail(
            f"{SYSTEM_PYTHON} is Python {'.'.join(version)}, the venv's is not: "
            "compiled dependencies would not load"
        )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    venv = directory / "venv"
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_path("purelib")
    Path(site, "zz_project_venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return venv / "bin" / "python"
