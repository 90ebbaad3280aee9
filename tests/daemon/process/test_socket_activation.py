"""The daemon under systemd's protocols, live: socket activation, sd_notify, restarts.

No systemd manager runs here (a container), so the manager's side is played by
``systemd-socket-activate`` and by the test itself: a "socket holder" that
binds the socket once and starts daemons on it with ``LISTEN_FDS`` (as the
user manager does for agentid-helper.socket), and a ``NOTIFY_SOCKET`` datagram
socket. The daemon talks to the local Entra emulator over real HTTPS, with the
blueprint secret read from ``$CREDENTIALS_DIRECTORY`` as ``LoadCredential=``
would provide it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_config import GRAPH_RESOURCE, emulator_profile, write_emulator_config
from log_audit import scan_tree
from tooling import require_tools

BIN = Path(sys.executable).parent
DAEMON = str(BIN / "agentid-helperd")
CLIENT = str(BIN / "agentid-helper")
STEP_TIMEOUT_S = 60.0
# Run the daemon as MemoryDenyWriteExecute=yes would: the kernel's PR_SET_MDWE
# (Linux >= 6.3, kept across execve) refuses W+X mappings from here on.
SHIM = r"""
import ctypes, os, sys
fd = int(sys.argv[1])
if fd >= 0:
    os.dup2(fd, 3)  # SD_LISTEN_FDS_START
    if fd != 3:
        os.close(fd)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_FDNAMES"] = "agentid-helper"
    os.environ["LISTEN_PID"] = str(os.getpid())  # execv keeps the pid
libc = ctypes.CDLL(None, use_errno=True)
os.environ["MDWE"] = "on" if libc.prctl(65, 1, 0, 0, 0) == 0 else "unsupported"
os.execv(sys.argv[2], sys.argv[2:])
"""

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Stack:
    """A private HOME, runtime dir, config and credentials for one daemon setup."""

    def __init__(self, root: Path, emulator: Any) -> None:
        self.root = root
        self.run = root / "run"
        self.run.mkdir(mode=0o700)
        self.sock = self.run / "agentid-helper" / "agentid-helper.sock"
        self.creds = root / "credentials"
        self.creds.mkdir(mode=0o700)
        secret = self.creds / "blueprint-secret"
        secret.write_text(emulator.blueprint_secret)
        secret.chmod(0o400)
        # The secret comes in as a systemd credential, as the units document.
        credential = {"secret_file": "$CREDENTIALS_DIRECTORY/blueprint-secret"}
        bot = emulator_profile(emulator.info, resource=GRAPH_RESOURCE, credential=credential)
        self.config = write_emulator_config(
            root / "config.toml",
            emulator.info,
            credential,
            profiles={"bot": bot},
            default_profile="bot",
        )
        self.logs: list[Path] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "XDG_RUNTIME_DIR": str(self.run),
            "XDG_CONFIG_HOME": str(self.root / "cfg"),
            "AGENTID_HELPER_CONFIG": str(self.config),
            "AGENTID_HELPER_SOCKET": str(self.sock),
            "AGENTID_HELPER_NO_AUTOSTART": "1",
            "CREDENTIALS_DIRECTORY": str(self.creds),
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def log_path(self) -> Path:
        path = self.root / f"daemon{len(self.logs)}.log"
        self.logs.append(path)
        return path

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def get(self) -> dict[str, Any]:
        """`agentid-helper get --format json`; fails the test with stderr on error."""
        proc = subprocess.run(
            [CLIENT, "get", "--format", "json"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, f"client exit {proc.returncode}: {proc.stderr}"
        return json.loads(proc.stdout)

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events


@pytest.fixture
def stack(emulator: Any) -> Iterator[Stack]:
    if not Path(CLIENT).exists() or not Path(DAEMON).exists():
        pytest.fail("agentid-helper / agentid-helperd not installed: run scripts/setup.sh")
    # sun_path is 108 bytes: keep the socket path short (pytest's tmp_path may not be).
    root = Path(tempfile.mkdtemp(prefix="aid-sa-", dir="/tmp"))
    try:
        yield Stack(root, emulator)
    finally:
        scan_tree(root)  # the session-wide log audit (tests/support/log_audit.py)
        shutil.rmtree(root, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STEP_TIMEOUT_S / 2)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=STEP_TIMEOUT_S / 2)


def _wait_for(predicate: Any, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- systemd-socket-activate --------------------------------------------------------------


def test_get_through_systemd_socket_activate(stack: Stack) -> None:
    require_tools("systemd-socket-activate")
    stack.sock.parent.mkdir(mode=0o700)
    env = stack.env()
    # systemd-socket-activate passes only the variables named with -E.
    argv = ["systemd-socket-activate", "-l", str(stack.sock), "--fdname=agentid-helper"]
    for name, value in env.items():
        argv += ["-E", f"{name}={value}"]
    argv += [sys.executable, "-c", SHIM, "-1", DAEMON, "--log-format", "json"]
    log = stack.log_path()
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=err, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(stack.sock.exists, "systemd-socket-activate to bind", proc)
        before = os.stat(stack.sock)
        # The daemon is started by this first connection (it waits in the backlog).
        body = stack.get()
        assert body["token_type"] == "Bearer"
        assert body["source"] == "identity_provider"
        assert stack.get()["source"] == "cache"
        after = os.stat(stack.sock)
        assert (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)
        ready = [e for e in stack.log_events() if e.get("event") == "daemon ready"]
        assert len(ready) == 1, stack.log_text()
        # The socket came from LISTEN_FDS (systemd-socket-activate execs in place:
        # the daemon is its pid), and the daemon bound nothing of its own.
        assert ready[0]["systemd_socket"] is True
        assert ready[0]["pid"] == proc.pid
        assert not Path(str(stack.sock) + ".lock").exists()
    finally:
        code = _stop(proc)
    assert code == 0, stack.log_text()
    assert stack.sock.exists()  # systemd's socket: the daemon never removes it
    assert body["access_token"] not in stack.log_text()


# --- sd_notify ------------------------------------------------------------------------------


def _recv_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen.append(msg)
        if wanted in msg.splitlines():
            return
    raise AssertionError(f"no {wanted} among {seen}")


def test_sd_notify_ready_watchdog_stopping(stack: Stack) -> None:
    notify_path = stack.root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
        ns.bind(str(notify_path))
        ns.settimeout(0.5)
        log = stack.log_path()
        env = stack.env(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="200000")
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [DAEMON, "--log-format", "json"], env=env, stdout=err, stderr=subprocess.STDOUT
            )
        try:
            seen: list[str] = []
            _recv_until(ns, "READY=1", seen)
            # READY=1 comes only once the listener is up: a client gets served now.
            assert stack.sock.exists()
            assert stack.get()["token_type"] == "Bearer"
            watchdog_before = sum("WATCHDOG=1" in m.splitlines() for m in seen)
            for _ in range(3):
                _recv_until(ns, "WATCHDOG=1", seen)
            assert sum("WATCHDOG=1" in m.splitlines() for m in seen) >= watchdog_before + 3
            proc.send_signal(signal.SIGTERM)
            _recv_until(ns, "STOPPING=1", seen)
            assert proc.wait(timeout=STEP_TIMEOUT_S) == 0
        finally:
            _stop(proc)
    assert not stack.sock.exists()  # its own socket: removed on exit
    assert all("access_token" not in m for m in seen)


# --- restarts behind a held socket ---------------------------------------------------------


def _accept_queue(path: Path) -> int:
    """Connections waiting in a listening Unix socket's accept queue (``ss`` Recv-Q)."""
    out = subprocess.run(
        ["ss", "-xlH", "src", str(path)],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=True,
    ).stdout.split()
    return int(out[2]) if len(out) > 2 else 0


class SocketHolder:
    """Plays the user manager: owns the listening socket, (re)starts daemons on it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        stack.sock.parent.mkdir(mode=0o700)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(stack.sock))
        os.chmod(stack.sock, 0o600)
        self.sock.listen(128)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        log = self.stack.log_path()
        with log.open("wb") as err:
            self.daemon = subprocess.Popen(
                [sys.executable, "-c", SHIM, str(fd), DAEMON, "--log-format", "json"],
                env=self.stack.env(),
                pass_fds=(fd,),
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        self.started += 1
        return self.daemon

    def close(self) -> None:
        if self.daemon is not None:
            _stop(self.daemon)
        self.sock.close()


def test_restarts_behind_held_socket_lose_no_request(stack: Stack) -> None:
    holder = SocketHolder(stack)
    errors: list[str] = []
    served: list[str] = []
    done = threading.Event()
    queued = 0

    def client_loop() -> None:
        while not done.is_set():
            try:
                served.append(stack.get()["source"])
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))

    try:
        holder.start()
        assert stack.get()["source"] == "identity_provider"
        clients = [threading.Thread(target=client_loop, daemon=True) for _ in range(2)]
        for t in clients:
            t.start()
        for restart in range(2):
            # A graceful restart (systemctl restart): SIGTERM, then a new daemon.
            # Count only once the current daemon is ready: responses of the
            # previous one may still be on their way to the client threads.
            _wait_for(
                lambda restart=restart: (
                    sum(e.get("event") == "daemon ready" for e in stack.log_events()) >= restart + 1
                ),
                "the daemon to be ready",
            )
            count = len(served)
            _wait_for(
                lambda count=count: errors or len(served) >= count + 2, "requests to be served"
            )
            assert holder.daemon is not None
            assert _stop(holder.daemon) == 0
            if shutil.which("ss"):
                # Proof that a client is mid-request while no daemon runs: its
                # connection sits in the held socket's accept queue.
                _wait_for(lambda: errors or _accept_queue(stack.sock) >= 1, "a queued connection")
                queued += 1
            holder.start()
        count = len(served)
        _wait_for(lambda: errors or len(served) >= count + 2, "requests after the last restart")
        done.set()
        for t in clients:
            t.join(timeout=STEP_TIMEOUT_S)
        print(
            f"\nserved {len(served)} requests across {holder.started} daemons, "
            f"{queued} restart(s) with a client waiting in the backlog"
        )
        assert errors == []
        assert "identity_provider" in served  # restarted daemons start with empty caches
        ready = [e for e in stack.log_events() if e.get("event") == "daemon ready"]
        assert len(ready) == holder.started == 3
        assert all(e["systemd_socket"] is True for e in ready)
    finally:
        done.set()
        holder.close()
    assert stack.sock.exists()  # the holder's socket survives every daemon


def test_crash_then_restart_serves_queued_client(stack: Stack) -> None:
    holder = SocketHolder(stack)
    try:
        daemon = holder.start()
        assert stack.get()["token_type"] == "Bearer"
        daemon.kill()  # a crash: Restart=on-failure starts a new one
        daemon.wait(timeout=STEP_TIMEOUT_S)
        result: dict[str, Any] = {}
        # Connect while no daemon runs: the connection waits in the held backlog.
        client = threading.Thread(target=lambda: result.update(stack.get()), daemon=True)
        client.start()
        if shutil.which("ss"):
            _wait_for(lambda: _accept_queue(stack.sock) >= 1, "the client to queue")
        else:
            time.sleep(0.5)  # not an assertion: only lets the client queue first
        holder.start()
        client.join(timeout=STEP_TIMEOUT_S)
        assert result.get("source") == "identity_provider"
    finally:
        holder.close()


def test_daemon_runs_under_memory_deny_write_execute(stack: Stack) -> None:
    holder = SocketHolder(stack)
    try:
        holder.start()
        assert stack.get()["token_type"] == "Bearer"  # TLS, MSAL, cryptography, JWT
        assert holder.daemon is not None
        assert holder.daemon.poll() is None
        pid = holder.daemon.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"MDWE=on" not in environ:
            pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
        # PR_SET_MDWE held since before the interpreter started and the daemon
        # served a token: nothing in its stack needed a W+X mapping.
        assert stack.get()["source"] == "cache"
    finally:
        holder.close()


# --- SystemCallFilter= ----------------------------------------------------------------------


def _syscall_groups() -> dict[str, set[str]]:
    """``systemd-analyze syscall-filter``'s groups, as written (members may be groups)."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=True,
    ).stdout
    groups: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), set())
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.add(line.strip())
    return groups


def _expand(names: set[str], groups: dict[str, set[str]]) -> set[str]:
    result: set[str] = set()
    for name in names:
        result |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return result


def _unit_syscall_allowlist() -> set[str]:
    """What agentid-helper.service allows: its SystemCallFilter= lines, in order."""
    from agentid_client.systemd_units import SERVICE_TEMPLATE

    groups = _syscall_groups()
    allowed: set[str] = set()
    for line in SERVICE_TEMPLATE.splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1]
        if value.startswith("~"):
            allowed -= _expand(set(value[1:].split()), groups)
        else:
            allowed |= _expand(set(value.split()), groups)
    assert allowed, "no SystemCallFilter= allow list in the unit"
    return allowed


def test_daemon_syscalls_fit_the_unit_filter(stack: Stack) -> None:
    """Every system call the daemon makes serving a token passes SystemCallFilter=."""
    require_tools("strace", "systemd-analyze")
    allowed = _unit_syscall_allowlist()
    holder = SocketHolder(stack)
    trace = stack.root / "strace.txt"
    fd = holder.sock.fileno()
    with stack.log_path().open("wb") as err:
        # strace -f follows the shim's execv into the daemon.
        tracer = subprocess.Popen(
            [
                "strace",
                "-f",
                "-qq",
                "-o",
                str(trace),
                sys.executable,
                "-c",
                SHIM,
                str(fd),
                DAEMON,
                "--log-format",
                "json",
            ],
            env=stack.env(),
            pass_fds=(fd,),
            stdout=err,
            stderr=subprocess.STDOUT,
        )
    try:
        assert stack.get()["token_type"] == "Bearer"
        ready = [e for e in stack.log_events() if e.get("event") == "daemon ready"]
        os.kill(ready[0]["pid"], signal.SIGTERM)  # the daemon, not strace
        assert tracer.wait(timeout=STEP_TIMEOUT_S) == 0
    finally:
        _stop(tracer)
        holder.close()
    used: set[str] = set()
    families: set[str] = set()
    for line in trace.read_text(errors="replace").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            name, _, args = parts[1].partition("(")
            if name.isidentifier():
                used.add(name)
            if name == "socket":
                families.add(args.split(",", 1)[0])
    # RestrictAddressFamilies= also admits AF_NETLINK, for the managed identity
    # endpoint's sock_diag lookups; a daemon that serves no endpoint opens none.
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6"}, families
    # The shim's own pre-exec calls (prctl for PR_SET_MDWE, dup2) are not the daemon's.
    assert "openat" in used, sorted(used)
    assert "accept4" in used, sorted(used)
    print(f"\n{len(used)} distinct syscalls used, all within the {len(allowed)} allowed")
    assert sorted(used - allowed) == []
