"""README's quick start, run verbatim as a new user would: a fresh venv,
``pip install . ./emulator`` from a clone, the emulator's ``--print-config``, ``get``.

Offline and bounded: the clone is a copy of this checkout's files, and pip
is told through its environment only (the block runs as written) to use no
index but a wheelhouse: wheels of the project's dependencies and of its
build backend, repacked from this venv's installs. So pip resolves, builds
(with build isolation) and installs as it would from PyPI. HOME, the
runtime dir and TMPDIR are the test's own; every process the block leaves
running (the emulator, the autostarted daemon) is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tooling import ROOT
from wheelhouse import fill_wheelhouse

from agentid_client import docgen

README = ROOT / "README.md"
BLOCK_TIMEOUT_S = 240
BUILD_REQUIRES = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]

pytestmark = pytest.mark.timeout(BLOCK_TIMEOUT_S + 60)


def quick_start_block() -> str:
    """The first ```sh block under README's "## Quick start" heading."""
    text = README.read_text()
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's quick start has no sh block"
    return match.group(1)


def _copy_checkout(dest: Path) -> None:
    skip = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.egg-info"
    )
    shutil.copytree(ROOT, dest, ignore=skip, symlinks=True)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's dependencies and its build backend as wheels, made from
    this venv's installs: a local package index stand-in (pip --find-links)."""
    house = tmp_path_factory.mktemp("wheelhouse")
    ours = ("agentid-helper", "agentid-helper-emulator")  # built from the clone
    fill_wheelhouse(house, [*ours, *BUILD_REQUIRES], skip=ours)
    return house


def _peer_pid(sock: Path) -> int | None:
    """The pid serving the Unix socket (SO_PEERCRED), None when nobody does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(str(sock))
        except OSError:
            return None
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def new_user(tmp_path: Path, wheelhouse: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """(the clone to run in, the environment of a new user's shell)."""
    home = tmp_path / "home"
    home.mkdir()
    clone = tmp_path / "agentid-helper"
    _copy_checkout(clone)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys._base_executable)  # the interpreter of this venv
    runtime = Path(tempfile.mkdtemp(prefix="aidc-qs-"))  # short: AF_UNIX path limit
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),
        # offline pip, told through its environment only (the block runs as written):
        # the wheelhouse plays the package index
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    try:
        yield clone, env
    finally:
        config = home / "agentid-demo.toml"
        printed = re.search(r"emulator pid (\d+)", config.read_text()) if config.exists() else None
        if printed:
            _stop(int(printed.group(1)))
        daemon = _peer_pid(runtime / "agentid-helper" / "agentid-helper.sock")
        if daemon is not None:
            _stop(daemon)
        shutil.rmtree(runtime, ignore_errors=True)
        # The copy holds the test suite's planted secrets: not for the log audit.
        shutil.rmtree(clone, ignore_errors=True)


def test_the_quick_start_gets_a_token_in_a_fresh_venv(
    new_user: tuple[Path, dict[str, str]],
) -> None:
    clone, env = new_user
    block = quick_start_block()
    assert "pip install" in block and "--print-config" in block and "agentid-helper get" in block
    # Output to files, not pipes: the emulator the block leaves serving keeps them open.
    logs = Path(env["TMPDIR"])
    with (logs / "out.txt").open("w") as out_f, (logs / "err.txt").open("w") as err_f:
        returncode = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            cwd=clone,
            env=env,
            stdout=out_f,
            stderr=err_f,
            stdin=subprocess.DEVNULL,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        ).returncode
    out, err = (logs / "out.txt").read_text(), (logs / "err.txt").read_text()
    (logs / "out.txt").unlink()  # it holds tokens
    assert returncode == 0, out[-2000:] + err[-4000:]
    body = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert body["access_token"].count(".") == 2
    assert body["mode"] == "AutonomousApp" and body["source"] == "identity_provider"
    assert out.rstrip().splitlines()[-1].startswith("eyJ")  # the agent user's token, cut
    home = Path(env["HOME"])
    # no keyring was asked: the secret is the emulator's 0600 file
    secret = home / ".local" / "state" / "agentid-helper-emulator" / "blueprint.secret"
    assert secret.stat().st_mode & 0o777 == 0o600

    # What the README says about the installed venv holds there too.
    venv_bin = home / "agentid-venv" / "bin"
    user_env = {**env, "PATH": f"{venv_bin}:{env['PATH']}"}
    man = subprocess.run(
        ["man", "-w", "agentid-helper"], env=user_env, capture_output=True, text=True, timeout=30
    )
    assert man.stdout.strip() == str(home / "agentid-venv" / "share" / docgen.MAN_PATH[6:])
    for shell, relative in (("bash", docgen.BASH_PATH), ("zsh", docgen.ZSH_PATH)):
        script = subprocess.run(
            [str(venv_bin / "agentid-helper"), "completion", shell],
            env=user_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        installed = home / "agentid-venv" / relative
        assert script.stdout == installed.read_text()  # one generator, one text
