"""The `agentid-helper` launcher as a wheel installs it into a fresh venv.

The launcher is a shared script, not an entry point (pyproject.toml): these
tests build the wheel offline, install it without dependencies (the client
needs none) and run the installed command the ways users run it: directly,
through a symlink to it and its sibling agentid-helperd (pipx's layout), and
through a lone symlink.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_fakes import TOKEN, FakeDaemon
from test_client_hotpath import _trace, launcher_trace_problems
from tooling import build_wheel

from agentid_client import __version__

PIP = (sys.executable, "-m", "pip")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def install(wheel: Path, venv: Path) -> Path:
    """A fresh venv (no pip, no dependencies) with the wheel installed; its bin dir."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run(
        [
            *PIP,
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(wheel, tmp_path_factory.mktemp("launcher") / "venv")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


def test_installed_launcher_prints_its_version(installed: Path) -> None:
    launcher = installed / "agentid-helper"
    assert launcher.read_text().startswith("#!/bin/sh\n")  # the installer left it alone
    assert os.access(launcher, os.X_OK)
    done = _run([str(launcher), "--version"])
    assert (done.returncode, done.stdout) == (0, f"agentid-helper {__version__}\n"), done.stderr


def test_installed_launcher_gets_a_token_without_site(
    installed: Path, fake_daemon: FakeDaemon, tmp_path: Path
) -> None:
    out, lines = _trace(tmp_path, [str(installed / "agentid-helper"), "get"], dict(os.environ))
    assert TOKEN in out
    assert launcher_trace_problems(lines) == []
    # the fresh venv's python, not the one running the tests
    execs = [ln for ln in lines if "execve(" in ln]
    assert any(f'"{installed}/python' in ln and '"-I", "-S"' in ln for ln in execs), execs


def test_symlinked_launcher_and_sibling_pipx_layout(
    installed: Path, fake_daemon: FakeDaemon, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("agentid-helper", "agentid-helperd"):
        (bin_dir / name).symlink_to(installed / name)
    done = _run([str(bin_dir / "agentid-helper"), "get"])
    assert done.returncode == 0, done.stderr
    assert TOKEN in done.stdout


def test_a_lone_symlink_finds_the_installation(
    installed: Path, fake_daemon: FakeDaemon, tmp_path: Path
) -> None:
    lone = tmp_path / "agentid-helper"
    lone.symlink_to(installed / "agentid-helper")
    done = _run([str(lone), "get"])
    assert done.returncode == 0, done.stderr
    assert TOKEN in done.stdout


def test_a_copy_without_its_installation_says_so(tmp_path: Path, installed: Path) -> None:
    stray = tmp_path / "agentid-helper"
    stray.write_bytes((installed / "agentid-helper").read_bytes())
    stray.chmod(0o755)
    done = _run([str(stray), "get"])
    assert done.returncode == 5
    assert done.stderr.startswith("agentid-helper: cannot find this installation's Python")


def test_an_installation_whose_path_has_a_space(
    wheel: Path, fake_daemon: FakeDaemon, tmp_path: Path
) -> None:
    """There the installer writes agentid-helperd with an sh preamble instead of a
    #! line (a #! path cannot hold a space); the launcher reads the path from it."""
    bin_dir = install(wheel, tmp_path / "with space" / "venv")
    assert (bin_dir / "agentid-helperd").read_text().startswith("#!/bin/sh\n")
    out, lines = _trace(tmp_path, [str(bin_dir / "agentid-helper"), "get"], dict(os.environ))
    assert TOKEN in out
    assert launcher_trace_problems(lines) == []
