"""The trust boundary between two real uids: Alice's client talks only to Alice's daemon.

Tests run as root and drop to the test users (tests/support/machine_users.py) with
setpriv. Mallory (the attacker) gets there first: she creates the directory
Alice's client falls back to without ``XDG_RUNTIME_DIR`` and listens in it,
or plants symlinks there, or listens on a socket inside a directory that
looks right. Each case checks that Alice's client refuses (exit 3, one line
naming the path and its owner), that Mallory's log holds no request and no
user token, and that no file outside the directory is touched.

The tests own their world. The fallback only applies when
``/run/user/<alice>`` is absent, which a real login of the test user (or
its systemd --user manager) makes false: every command of the test users
runs in a private mount namespace whose ``/run/user`` is an empty tmpfs
(:func:`as_user`), so the machine's own runtime dirs neither break the tests
nor are touched by them. Two runs on one machine (colleagues' included) take
turns on ``two_uids.TEST_USERS_LOCK`` (module-wide), since both act as the same
uids.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import two_uids
from log_audit import scan_tree
from machine_users import ALICE, MALLORY, require_user
from tooling import SUPPORT

IMPOSTOR = SUPPORT / "impostor_daemon.py"
USER_TOKEN = "eyJhbGciOiJub25lIn0.eyJ1cG4iOiJhbGljZUBleGFtcGxlIn0.alice-user-token-xyz"

# Alice's profile, and git's host table pointing at it (so git-credential asks).
CONFIG = """
default_profile = "bot"
[defaults]
tenant_id = "11111111-1111-1111-1111-111111111111"
[profiles.bot]
blueprint_app_id = "22222222-2222-2222-2222-222222222222"
agent_identity_app_id = "33333333-3333-3333-3333-333333333333"
[git."dev.azure.com"]
profile = "bot"
"""

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to test users"),
    pytest.mark.usefixtures("test_users_turn"),  # tests/support/two_uids.py
]


def as_user(user: str) -> list[str]:
    """Run as ``user`` without any ``/run/user/<uid>`` (see the module docstring)."""
    return two_uids.as_user(user, hide_run_user=True)


@dataclass
class Box:
    """A private stand-in for /tmp (root-owned, 1777) with a home for each user."""

    root: Path
    alice_uid: int
    python: Path

    @property
    def runtime(self) -> Path:
        """Where Alice's client and daemon fall back to: ``<tmp>/runtime-<uid>``."""
        return self.root / f"runtime-{self.alice_uid}"

    @property
    def sock_dir(self) -> Path:
        return self.runtime / "agentid-helper"

    @property
    def alice_home(self) -> Path:
        return self.root / "home-alice"

    @property
    def mallory_home(self) -> Path:
        return self.root / "home-mallory"

    def alice_env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.alice_home),
            "TMPDIR": str(self.root),
            "AGENTID_HELPER_CONFIG": str(self.alice_home / "config.toml"),
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def alice(
        self, *argv: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user(ALICE), str(self.python), "-m", "agentid_client", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=env or self.alice_env(),
            timeout=60,
            cwd="/",
        )


@pytest.fixture
def box(user_python: Path) -> Iterator[Box]:
    alice, mallory = require_user(ALICE), require_user(MALLORY)
    root = Path(tempfile.mkdtemp(prefix="aidc-trust-"))
    root.chmod(0o1777)  # like /tmp: every user may create, nobody may replace another's
    b = Box(root, alice.pw_uid, user_python)
    for home, user in ((b.alice_home, alice), (b.mallory_home, mallory)):
        home.mkdir(mode=0o700)
        os.chown(home, user.pw_uid, user.pw_gid)
    config = b.alice_home / "config.toml"
    config.write_text(CONFIG)
    os.chown(config, alice.pw_uid, alice.pw_gid)
    try:
        yield b
    finally:
        scan_tree(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def impostors() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def start_impostor(
    procs: list[subprocess.Popen[bytes]],
    box: Box,
    sock: Path,
    *,
    as_mallory: bool = True,
    make_dirs: bool = False,
    drop_to: str | None = None,
) -> Path:
    """Start the attacker's daemon; returns its request log."""
    log, ready = box.mallory_home / "requests.log", box.mallory_home / "ready"
    argv = [str(box.python), str(IMPOSTOR), "--socket", str(sock), "--log", str(log)]
    argv += ["--ready", str(ready)]
    argv += ["--make-dirs"] if make_dirs else []
    argv += ["--drop-to", drop_to] if drop_to else []
    prefix = as_user(MALLORY) if as_mallory else []
    proc = subprocess.Popen([*prefix, *argv], stdin=subprocess.DEVNULL)
    procs.append(proc)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, "the impostor daemon failed to start"
        assert time.monotonic() < deadline, "the impostor daemon did not get ready"
        time.sleep(0.05)
    return log


def requests_received(log: Path) -> list[str]:
    """What the impostor was sent: one entry per connection that carried bytes."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [line for line in lines if not line.startswith("0 ")]


# Every command that talks to the daemon, with the stdin it needs.
COMMANDS = {
    "get": (["get"], ""),
    "get-obo": (["get", "--mode", "OBO", "--user-token-file", "-"], USER_TOKEN + "\n"),
    "kubectl-credential": (["kubectl-credential"], ""),
    "git-credential": (["git-credential", "get"], "protocol=https\nhost=dev.azure.com\n\n"),
    "exec": (["exec", "--", "true"], ""),
    "status": (["status"], ""),
    "flush": (["flush", "--all"], ""),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_row1_fallback_dir_made_by_another_uid_is_refused(
    box: Box, impostors: list[subprocess.Popen[bytes]], command: str
) -> None:
    """Row 1: Mallory creates <tmp>/runtime-<alice>/agentid-helper/ (0777) and listens."""
    log = start_impostor(impostors, box, box.sock_dir / "agentid-helper.sock", make_dirs=True)
    argv, stdin = COMMANDS[command]
    result = box.alice(*argv, stdin=stdin)
    assert result.returncode == 3, (result.stdout[:200], result.stderr)
    first = result.stderr.splitlines()[0]
    assert str(box.runtime) in first, first
    assert f"({MALLORY})" in first, first
    assert "XDG_RUNTIME_DIR" in first
    assert "AGENTID_HELPER_SOCKET" in first
    assert "eyJ" not in result.stdout  # the attacker's token was never printed
    assert requests_received(log) == []
    assert "alice-user-token" not in (log.read_text() if log.exists() else "")


def test_row1_fallback_parent_made_by_another_uid_is_refused(
    box: Box, impostors: list[subprocess.Popen[bytes]]
) -> None:
    """Mallory owns only <tmp>/runtime-<alice>: Alice's autostart must not build inside it."""
    box.runtime.mkdir()
    box.runtime.chmod(0o777)
    mallory = require_user(MALLORY)
    os.chown(box.runtime, mallory.pw_uid, mallory.pw_gid)
    result = box.alice("get")
    assert result.returncode == 3, result.stderr
    assert f"owned by uid {mallory.pw_uid} ({MALLORY})" in result.stderr.splitlines()[0]
    assert os.listdir(box.runtime) == []  # nothing created in the attacker's directory


def test_row2_listener_of_another_uid_in_a_directory_that_looks_right(
    box: Box, impostors: list[subprocess.Popen[bytes]]
) -> None:
    """Row 2: Alice's own 0700 directory, but the process listening there is Mallory's."""
    alice = require_user(ALICE)
    run = box.alice_home / "run"
    run.mkdir(mode=0o700)
    os.chown(run, alice.pw_uid, alice.pw_gid)
    sock = run / "agentid-helper.sock"
    # Bound by root inside Alice's directory, then listen() as Mallory: SO_PEERCRED says Mallory.
    log = start_impostor(impostors, box, sock, as_mallory=False, drop_to=MALLORY)
    env = box.alice_env(AGENTID_HELPER_SOCKET=str(sock))
    for name in sorted(COMMANDS):
        argv, stdin = COMMANDS[name]
        result = box.alice(*argv, stdin=stdin, env=env)
        assert result.returncode == 3, (name, result.stderr)
        first = result.stderr.splitlines()[0]
        assert f"refusing the daemon at {sock}" in first, first
        assert f"({MALLORY})" in first, first
    assert requests_received(log) == []  # connected, then closed before a byte


def test_row3_planted_symlinks_are_never_followed(box: Box) -> None:
    """Row 3: symlinks for the log and the lock in a directory Mallory made for Alice."""
    victim = box.alice_home / "victim.txt"
    victim.write_text("precious\n")
    alice = require_user(ALICE)
    os.chown(victim, alice.pw_uid, alice.pw_gid)
    before = os.stat(victim)
    created = box.alice_home / "created-by-lock"
    planted = [
        ["mkdir", "-m", "0777", "-p", str(box.sock_dir)],
        ["chmod", "0777", str(box.runtime)],
        ["ln", "-s", str(victim), str(box.sock_dir / "agentid-helperd.log")],
        ["ln", "-s", str(created), str(box.sock_dir / "agentid-helper.lock")],
    ]
    for argv in planted:
        subprocess.run([*as_user(MALLORY), *argv], check=True)
    result = box.alice("get")
    assert result.returncode == 3, result.stderr
    assert str(box.runtime) in result.stderr.splitlines()[0]
    assert victim.read_text() == "precious\n"
    assert os.stat(victim).st_mtime_ns == before.st_mtime_ns
    assert not created.exists()
    assert sorted(os.listdir(box.sock_dir)) == ["agentid-helper.lock", "agentid-helperd.log"]


def test_daemon_refuses_a_fallback_dir_of_another_uid_with_exit_5(box: Box) -> None:
    """The daemon applies the same rule: one line, exit 5, no traceback, nothing created."""
    subprocess.run([*as_user(MALLORY), "mkdir", "-m", "0777", str(box.runtime)], check=True)
    result = subprocess.run(
        [*as_user(ALICE), str(box.python), "-m", "agentid_daemon"],
        capture_output=True,
        text=True,
        env=box.alice_env(),
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(box.runtime) in lines[0], lines
    assert f"({MALLORY})" in lines[0], lines
    assert os.listdir(box.runtime) == []


def test_fallback_dir_is_created_private_and_alices_own_daemon_serves(box: Box) -> None:
    """Without XDG_RUNTIME_DIR the client creates <tmp>/runtime-<uid> 0700 and autostarts."""
    started = box.alice("get", "--profile", "no-such-profile")  # autostarts, then 404
    assert started.returncode == 2, started.stderr
    result = box.alice("status", "--json")
    pid = None
    try:
        assert result.returncode == 0, result.stderr
        pid = json.loads(result.stdout)["daemon"]["pid"]
        for directory in (box.runtime, box.sock_dir):
            info = os.lstat(directory)
            assert (info.st_uid, info.st_mode & 0o777) == (box.alice_uid, 0o700)
        # Mallory cannot even reach the socket: the directory is Alice's alone.
        probe = subprocess.run(
            [*as_user(MALLORY), "test", "-e", str(box.sock_dir / "agentid-helper.sock")]
        )
        assert probe.returncode != 0
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def test_row4_daemon_leaves_no_core_file_and_limits_show_0(box: Box) -> None:
    """Row 4: started under `ulimit -c unlimited`, killed with SIGSEGV: no core anywhere."""

    def unlimited_core() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)

    proc = subprocess.Popen(
        [*as_user(ALICE), str(box.python), "-m", "agentid_daemon"],
        env=box.alice_env(),
        cwd=box.alice_home,  # core_pattern "core" writes into the cwd
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=unlimited_core,
    )
    try:
        sock = box.sock_dir / "agentid-helper.sock"
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon did not listen"
            time.sleep(0.05)
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        core = next(line for line in limits if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
        # PR_SET_DUMPABLE 0: the kernel hands the files in /proc/<pid> of Alice's process
        # (mem, environ, status) to root: no debugger or reader of Alice's may open them.
        assert os.stat(f"/proc/{proc.pid}/mem").st_uid == 0
    finally:
        proc.send_signal(signal.SIGSEGV)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGSEGV
    assert [name for name in os.listdir(box.alice_home) if name.startswith("core")] == []
