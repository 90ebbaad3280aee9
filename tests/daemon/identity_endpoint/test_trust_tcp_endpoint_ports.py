"""The managed identity endpoint's port and sessions, between two real uids.

Alice runs her daemon (against the emulator) and ``agentid-helper exec`` with
an app that polls ``IDENTITY_ENDPOINT`` as the Azure SDKs do
(tests/support/identity_poller.py). Mallory, another local uid, tries all the while
to ``bind()`` the app's port (tests/support/endpoint_squatter.py) so as to receive
its header and feed it forged tokens. The tests run as root and drop to the
test users with setpriv (tests/support/machine_users.py).

- a daemon crash or restart never frees the port of a live exec: Mallory
  never binds it, never sees a header, never sends a token; the restarted
  daemon serves the same endpoint and header again;
- the sidecar's fixed port, taken before the daemon starts: exit 5, the
  header file is replaced, the header Mallory may have seen is refused;
  held by a socket unit (``LISTEN_FDS``): never free across restarts;
- a registering process that exits and whose pid Mallory's process takes
  before the daemon looks: no session (SO_PEERPIDFD and pidfd_open paths);
- one process registering 1100 sessions gets 32; another exec still works.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from emulator_config import write_emulator_config
from emulator_harness import Emulator
from log_audit import scan_tree
from machine_users import ALICE, MALLORY, require_user
from tooling import SUPPORT
from two_uids import as_user

SQUATTER = SUPPORT / "endpoint_squatter.py"
POLLER = SUPPORT / "identity_poller.py"
REGISTRAR = SUPPORT / "session_registrar.py"
PIDFD_OPEN_DAEMON = SUPPORT / "pidfd_open_daemon.py"
STEP_S = 60.0
# Run the daemon with a listener passed as systemd does (fd 3, named), then exec it.
SOCKET_UNIT_SHIM = r"""
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
if fd != 3:
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "managed-identity"
os.environ["LISTEN_PID"] = str(os.getpid())  # execv keeps the pid
os.execv(sys.argv[2], sys.argv[2:])
"""

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to test users"),
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("test_users_turn"),  # tests/support/two_uids.py
]


def wait_for(what: str, check: Callable[[], bool], timeout: float = STEP_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    """Alice's home, runtime directory, config and daemon; Mallory's home and processes."""

    root: Path
    python: Path
    emulator: Emulator
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    daemon_logs: int = 0

    @property
    def alice_home(self) -> Path:
        return self.root / "home-alice"

    @property
    def mallory_home(self) -> Path:
        return self.root / "home-mallory"

    @property
    def socket(self) -> Path:
        return self.root / "run-alice" / "agentid-helper" / "agentid-helper.sock"

    @property
    def config(self) -> Path:
        return self.alice_home / "config.toml"

    def alice_owned(self, path: Path, text: str) -> Path:
        alice = require_user(ALICE)
        path.write_text(text)
        path.chmod(0o600)
        os.chown(path, alice.pw_uid, alice.pw_gid)
        return path

    def write_config(self, daemon: dict[str, Any] | None = None) -> None:
        ca = self.alice_owned(self.alice_home / "ca.pem", Path(self.emulator.ca_bundle).read_text())
        secret = self.alice_owned(self.alice_home / "bp-secret", self.emulator.blueprint_secret)
        write_emulator_config(
            self.config,
            self.emulator.info,
            {"secret_file": str(secret)},
            ca_bundle=str(ca),
            daemon=daemon,
        )
        self.alice_owned(self.config, self.config.read_text())

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.python.parent}:/usr/bin:/bin",
            "HOME": str(self.alice_home),
            "XDG_RUNTIME_DIR": str(self.root / "run-alice"),
            "AGENTID_HELPER_CONFIG": str(self.config),
            "AGENTID_HELPER_NO_AUTOSTART": "1",
            "PYTHONPATH": str(SUPPORT),
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def spawn(self, user: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen([*as_user(user), *argv], env=self.env(), cwd="/", **kw)
        self.procs.append(proc)
        return proc

    def start_daemon(
        self, *, pidfd_open: bool = False, ready: bool = True, listener: socket.socket | None = None
    ) -> subprocess.Popen[bytes]:
        """Alice's daemon; its stderr (the log) in ``home-alice/daemon-N.log``.

        *listener*: passed as a socket unit would (fd 3, ``managed-identity``).
        """
        self.daemon_logs += 1
        log = (self.alice_home / f"daemon-{self.daemon_logs}.log").open("wb")
        program = [str(PIDFD_OPEN_DAEMON)] if pidfd_open else ["-m", "agentid_daemon"]
        argv = [str(self.python), *program, "--socket", str(self.socket), "--log-format", "json"]
        extra: dict[str, Any] = {}
        if listener is not None:
            argv = [str(self.python), "-c", SOCKET_UNIT_SHIM, str(listener.fileno()), *argv]
            extra["pass_fds"] = (listener.fileno(),)
        proc = self.spawn(ALICE, argv, stdout=log, stderr=log, **extra)
        log.close()
        if ready:
            wait_for("the daemon", lambda: proc.poll() is not None or self.status() is not None)
            assert proc.poll() is None, self.daemon_log()
        return proc

    def daemon_log(self) -> str:
        return (self.alice_home / f"daemon-{self.daemon_logs}.log").read_text(errors="replace")

    def status(self) -> dict[str, Any] | None:
        shown = self.alice("status", "--json")
        return json.loads(shown.stdout) if shown.returncode == 0 else None

    def sessions(self) -> int:
        status = self.status()
        assert status is not None, "the daemon does not answer"
        return int(status["daemon"]["managed_identity"]["sessions"])

    def alice(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user(ALICE), str(self.python), "-m", "agentid_client", *argv],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=STEP_S,
            cwd="/",
        )

    def exec_app(self, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """``alice: agentid-helper exec -- python identity_poller.py``: (proc, log, stop file)."""
        log, stop = self.alice_home / f"{name}.log", self.alice_home / f"{name}.stop"
        err = (self.alice_home / f"{name}-exec-stderr.log").open("wb")
        argv = [str(self.python), "-m", "agentid_client", "exec", "--"]
        argv += [str(self.python), str(POLLER), "--log", str(log), "--stop", str(stop)]
        proc = self.spawn(ALICE, argv, stderr=err)
        err.close()
        return proc, log, stop

    def start_squatter(self, port: int, seconds: float) -> tuple[Path, Path]:
        """Mallory retries bind() on *port* for *seconds*: (report, ready file)."""
        report, ready = self.mallory_home / f"squat-{port}.log", self.mallory_home / f"{port}.ready"
        argv = [str(self.python), str(SQUATTER), "--port", str(port), "--seconds", str(seconds)]
        self.spawn(MALLORY, [*argv, "--log", str(report), "--ready", str(ready)])
        wait_for("the squatter", ready.exists)
        return report, ready


def answers(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def squat_report(report: Path) -> dict[str, Any]:
    wait_for("the squatter's report", report.exists)
    return dict(json.loads(report.read_text()))


def assert_never_squatted(report: dict[str, Any]) -> None:
    assert report["attempts"] > 100, report  # it really kept trying
    assert report["bound"] is False, report
    assert report["connections"] == report["bytes"] == report["forged_tokens_sent"] == 0, report
    assert report["identity_header_seen"] is False, report


@pytest.fixture
def stack(user_python: Path, emulator: Emulator) -> Iterator[Stack]:
    alice, mallory = require_user(ALICE), require_user(MALLORY)
    root = Path(tempfile.mkdtemp(prefix="aidc-mi-ports-"))
    root.chmod(0o755)
    s = Stack(root, user_python, emulator)
    for directory, user in (
        (s.alice_home, alice),
        (s.mallory_home, mallory),
        (root / "run-alice", alice),
    ):
        directory.mkdir(mode=0o700)
        os.chown(directory, user.pw_uid, user.pw_gid)
    s.write_config()
    try:
        yield s
    finally:
        for proc in reversed(s.procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        scan_tree(root)
        shutil.rmtree(root, ignore_errors=True)


def _port_of(log: Path) -> int:
    wait_for("the app's first answer", lambda: any(a.get("status") == 200 for a in answers(log)))
    endpoint = answers(log)[0]["endpoint"]
    port = urllib.parse.urlsplit(endpoint).port
    assert port is not None
    return port


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "restart"])
def test_row1_daemon_restart_never_frees_a_live_exec_port(stack: Stack, stop: int) -> None:
    daemon = stack.start_daemon()
    app, log, stop_file = stack.exec_app("app")
    port = _port_of(log)
    report, _ready = stack.start_squatter(port, seconds=6)
    daemon.send_signal(stop)
    daemon.wait(timeout=STEP_S)
    time.sleep(2.5)  # no daemon at all: Mallory retries bind() every millisecond
    before_restart = len(answers(log))
    stack.start_daemon()
    # The restarted daemon got the listener and the header back from exec.
    wait_for(
        "an answer from the restarted daemon",
        lambda: any(a.get("status") == 200 for a in answers(log)[before_restart:]),
    )
    assert_never_squatted(squat_report(report))
    stop_file.touch()
    assert app.wait(timeout=STEP_S) == 0
    seen = answers(log)
    assert not any(a.get("forged") for a in seen)
    assert seen[-1] == {"sdk": "ok", "forged": False}  # azure-identity, after the restart
    assert stack.sessions() == 0  # the session ended with the exec


def test_row1_killed_exec_process_leaves_the_port_with_the_app(stack: Stack) -> None:
    """SIGKILL of exec itself: its session ends, but the app still holds the port."""
    stack.start_daemon()
    app, log, _stop_file = stack.exec_app("app")
    port = _port_of(log)
    orphan = int(answers(log)[0]["pid"])
    try:
        app.kill()  # the exec process (the app is its child and lives on)
        app.wait(timeout=STEP_S)
        wait_for("the session to end", lambda: stack.sessions() == 0)
        report, _ready = stack.start_squatter(port, seconds=2)
        assert_never_squatted(squat_report(report))
        # The endpoint is unserved now (connections wait in the backlog), never forged.
        assert os.path.exists(f"/proc/{orphan}")
        assert not any(a.get("forged") for a in answers(log))
    finally:
        os.kill(orphan, signal.SIGKILL)


def _sidecar_config(stack: Stack, port: int) -> Path:
    header_file = stack.alice_owned(stack.alice_home / "mi-header", "old-header-" + "x" * 40 + "\n")
    stack.write_config(
        {
            "managed_identity_listen": f"127.0.0.1:{port}",
            "managed_identity_header_file": str(header_file),
        }
    )
    return header_file


def _get(port: int, header: str, user: str, stack: Stack) -> dict[str, Any]:
    """One GET with *header*, sent by *user*'s process: status and whether a token came."""
    endpoint = f"http://127.0.0.1:{port}/msi/token"
    done = subprocess.run(
        [*as_user(user), str(stack.python), str(POLLER), "--once"],
        capture_output=True,
        text=True,
        timeout=STEP_S,
        # The header goes by the environment: argv is visible to every user.
        env=stack.env(IDENTITY_ENDPOINT=endpoint, IDENTITY_HEADER=header),
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_row2_sidecar_port_taken_before_start(stack: Stack) -> None:
    port = free_port()
    header_file = _sidecar_config(stack, port)
    leaked = header_file.read_text().strip()
    report, ready = stack.start_squatter(port, seconds=4)
    wait_for("Mallory to hold the port", lambda: ready.read_text() == "bound\n")
    daemon = stack.start_daemon(ready=False)
    assert daemon.wait(timeout=STEP_S) == 5
    line = stack.daemon_log().strip().splitlines()[-1]
    assert f"cannot listen on 127.0.0.1:{port}" in line and "new one" in line, line
    assert leaked not in stack.daemon_log()
    fresh = header_file.read_text().strip()
    assert fresh != leaked and len(fresh) >= 32
    # The app, configured with the old header, sends it to whoever listens there.
    assert _get(port, leaked, ALICE, stack)["forged"] is True
    assert squat_report(report)["identity_header_seen"] is True
    # Mallory lets go; Alice's daemon starts; Mallory replays the header she saw.
    stack.start_daemon()
    replay = _get(port, leaked, MALLORY, stack)
    assert replay["status"] != 200 and replay["token"] is False, replay
    assert _get(port, fresh, ALICE, stack) == {"status": 200, "forged": False, "token": True}


def test_row2_sidecar_port_held_by_a_socket_unit_across_restarts(stack: Stack) -> None:
    """The service manager binds the fixed port and keeps it while the daemon restarts."""
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    header_file = _sidecar_config(stack, port)
    header = header_file.read_text().strip()
    with held:
        daemon = stack.start_daemon(listener=held)
        assert _get(port, header, ALICE, stack) == {"status": 200, "forged": False, "token": True}
        report, _ready = stack.start_squatter(port, seconds=5)
        daemon.kill()
        daemon.wait(timeout=STEP_S)
        time.sleep(2)
        stack.start_daemon(listener=held)
        assert _get(port, header, ALICE, stack) == {"status": 200, "forged": False, "token": True}
        assert_never_squatted(squat_report(report))
    assert header_file.read_text().strip() == header  # never squatted: nothing to replace


def _registrations(stack: Stack) -> list[dict[str, Any]]:
    """The daemon's request log lines for POST /v1/identity-sessions."""
    found = []
    for line in stack.daemon_log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("path") == "/v1/identity-sessions":
            found.append(entry)
    return found


def _recycle_pid_for_mallory(pid: int, stack: Stack) -> subprocess.Popen[bytes]:
    """Start a process of Mallory's whose pid is *pid* (ns_last_pid, retried)."""
    last_pid = Path("/proc/sys/kernel/ns_last_pid")
    for _attempt in range(300):
        last_pid.write_text(str(pid - 1))
        proc = subprocess.Popen([*as_user(MALLORY), "sleep", "60"], stdin=subprocess.DEVNULL)
        stack.procs.append(proc)
        if proc.pid == pid:
            wait_for(
                "Mallory's process",
                lambda: f"\t{require_user(MALLORY).pw_uid}\t" in _proc_uid_line(pid),
            )
            return proc
        proc.kill()
        proc.wait(timeout=STEP_S)
    pytest.fail(f"could not get pid {pid} again for Mallory's process")


def _proc_uid_line(pid: int) -> str:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return ""
    return next((line for line in lines if line.startswith("Uid:")), "")


@pytest.mark.parametrize("pidfd_open", [False, True], ids=["SO_PEERPIDFD", "pidfd_open"])
def test_row8_session_of_an_exited_process_never_binds_a_recycled_pid(
    stack: Stack, pidfd_open: bool
) -> None:
    daemon = stack.start_daemon(pidfd_open=pidfd_open)
    os.kill(daemon.pid, signal.SIGSTOP)  # the daemon will look at the request late
    try:
        registrar = stack.spawn(
            ALICE,
            [str(stack.python), str(REGISTRAR), "--socket", str(stack.socket), "send-and-exit"],
        )
        assert registrar.wait(timeout=STEP_S) == 0  # sent, exited, reaped: its pid is free
        mallory = _recycle_pid_for_mallory(registrar.pid, stack)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    wait_for("the daemon to answer the registration", lambda: bool(_registrations(stack)))
    (refusal,) = _registrations(stack)
    assert refusal["status"] == 400, refusal
    assert mallory.poll() is None and _proc_uid_line(registrar.pid)
    assert stack.sessions() == 0


def test_row9_one_process_cannot_exhaust_the_session_table(stack: Stack) -> None:
    stack.start_daemon()
    out = stack.alice_home / "registered.json"
    registrar = stack.spawn(
        ALICE,
        [
            str(stack.python),
            str(REGISTRAR),
            "--socket",
            str(stack.socket),
            "many",
            "1100",
            "--out",
            str(out),
        ],
        stdin=subprocess.PIPE,
    )
    wait_for("1100 registrations", out.exists, timeout=180)
    assert json.loads(out.read_text()) == {"201": 32, "429": 1068}
    assert stack.sessions() == 32
    # Another process of Alice's: exec and the SDK work as ever.
    app, log, stop_file = stack.exec_app("other")
    stop_file.touch()
    assert app.wait(timeout=STEP_S) == 0
    assert answers(log)[-1] == {"sdk": "ok", "forged": False}
    # A refused registration is exit 2 with one clear line (the client's mapping).
    assert registrar.stdin is not None
    registrar.stdin.close()
    assert registrar.wait(timeout=STEP_S) == 0
    wait_for("the 32 sessions to end", lambda: stack.sessions() == 0)
