"""Autostart hears how the daemon's start went over a pipe: no polling, the daemon's words.

The client passes the write end of a pipe (``AGENTID_HELPER_READY_FD``); the
daemon writes ``ready`` once it listens, or its exit status and first error
line when it cannot start. So a config typo at autostart is exit 5 with the
daemon's did-you-mean (not exit 3 "see the log"), and the client never probes
the socket while the daemon starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tooling import SUPPORT

from agentid_client import autostart
from agentid_daemon.process.start_report import StartReport

CLIENT = [sys.executable, "-m", "agentid_client"]

# A stand-in daemon that takes a while before it listens (as the real one does
# while it imports), then serves with the shared fake and reports ready.
SLOW_STARTING_DAEMON = (
    "import os, sys, time; sys.path.insert(0, {tests!r});"
    "time.sleep(0.5);"
    "from client_fakes import FakeDaemon;"
    "f = FakeDaemon(os.environ['AGENTID_HELPER_SOCKET']).__enter__();"
    "open(os.environ['AGENTID_HELPER_SOCKET'] + '.pid', 'w').write(str(os.getpid()));"
    "fd = os.environ.get('AGENTID_HELPER_READY_FD');"
    "fd and os.write(int(fd), b'ready\\n');"
    "time.sleep(60)"
)


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A fresh socket directory; any daemon that started there is stopped afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="aidc-sr-"))
    yield directory
    for pidfile in directory.rglob("*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def _env(runtime: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_HELPER_")}
    env["AGENTID_HELPER_SOCKET"] = str(runtime / "run" / "agentid-helper.sock")
    env["AGENTID_HELPER_CONFIG"] = str(config)
    env["AGENTID_HELPER_TIMEOUT"] = "60"
    return env


@pytest.mark.parametrize(
    "text,daemon_words",
    [
        (
            '[defaults]\ntenant_idd = "x"\n',
            "[defaults] key 'tenant_idd': unknown key (did you mean 'tenant_id'?)",
        ),
        ("[defaults\n", "invalid TOML: Expected ']' at the end of a table declaration"),
    ],
)
@pytest.mark.e2e  # the client CLI autostarting a daemon process
def test_config_error_at_autostart_is_exit_5_with_the_daemons_words(
    runtime: Path, text: str, daemon_words: str
) -> None:
    """The real daemon, autostarted by the real client, refuses a bad config file."""
    config = runtime / "config.toml"
    config.write_text(text)
    done = subprocess.run(
        [*CLIENT, "get", "--profile", "app"],
        env=_env(runtime, config),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 5, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("agentid-helper: error: the daemon cannot start: configuration error: ")
    assert f"{config}: {daemon_words}" in first
    assert "unreachable" not in done.stderr
    log = runtime / "run" / autostart.LOG_NAME
    assert f"see {log}" in done.stderr
    assert daemon_words in log.read_text()  # the log keeps it too


@pytest.mark.e2e  # the client CLI autostarting a daemon process
def test_readiness_reaches_the_client_without_probing_the_socket(
    runtime: Path, tmp_path: Path
) -> None:
    """While the daemon starts, the client waits on the pipe: it connects to the
    socket only to find no daemon, once under the start lock, and for its request
    (the old way probed the socket every 20 ms until the daemon listened)."""
    sock = runtime / "run" / "agentid-helper.sock"
    trace = tmp_path / "connect.trace"
    code = (
        "import sys; from agentid_client import autostart;"
        f"autostart._DAEMON_CODE = {SLOW_STARTING_DAEMON.format(tests=str(SUPPORT))!r};"
        "from agentid_client.cli import main; sys.exit(main(['get']))"
    )
    done = subprocess.run(
        # Without -f: only the client's own syscalls, not the daemon's.
        ["strace", "-e", "trace=connect", "-o", str(trace), sys.executable, "-c", code],
        env=_env(runtime, runtime / "absent.toml"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().count(".") == 2  # the fake daemon's token
    attempts = [line for line in trace.read_text().splitlines() if f'"{sock}"' in line]
    assert len(attempts) == 3, attempts
    assert "ENOENT" in attempts[0] and "ENOENT" in attempts[1]
    assert attempts[2].endswith("= 0")


def test_a_daemon_that_reports_a_failure_is_not_waited_for(
    runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon that says it failed is believed at once, even while it still runs."""
    sock = runtime / "run" / "agentid-helper.sock"
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(sock))
    monkeypatch.setattr(
        autostart,
        "_DAEMON_CODE",
        "import os, time;"
        "open(os.environ['AGENTID_HELPER_SOCKET'] + '.pid', 'w').write(str(os.getpid()));"
        "fd = int(os.environ['AGENTID_HELPER_READY_FD']);"
        "os.write(fd, b'exit 5 agentid-helperd: refusing the socket directory /x\\n');"
        "time.sleep(60)",
    )
    with pytest.raises(autostart.StartFailed) as failed:
        autostart.ensure_daemon(str(sock), timeout=60)
    assert str(failed.value) == "refusing the socket directory /x"
    assert failed.value.exit_code == 5


def test_start_report_writes_one_line_and_forgets_the_descriptor() -> None:
    read_fd, write_fd = os.pipe()
    env = {"AGENTID_HELPER_READY_FD": str(write_fd), "HOME": "/"}
    report = StartReport.from_environ(env)
    assert "AGENTID_HELPER_READY_FD" not in env  # no child inherits the name
    assert not os.get_inheritable(write_fd)
    report.failed(5, "agentid-helperd: configuration error: x\nsecond line\n")
    report.ready()  # after a failure: nothing more is written
    with os.fdopen(read_fd, "rb") as reader:
        assert reader.read() == b"exit 5 agentid-helperd: configuration error: x\n"
    with pytest.raises(OSError):
        os.fstat(write_fd)  # closed by the report


def test_no_pipe_means_no_report() -> None:
    for env in ({}, {"AGENTID_HELPER_READY_FD": "not-a-number"}):
        report = StartReport.from_environ(dict(env))
        report.ready()
        report.failed(5, "x")


@pytest.mark.parametrize("outcome", ["ready", "failed"])
def test_the_report_lets_go_of_the_clients_start_lock_with_its_line(
    tmp_path: Path, outcome: str
) -> None:
    """A client answered before the daemon listens passes its start lock
    (``AGENTID_HELPER_START_LOCK_FD``): held by the report, not by a child, and let
    go with the line, whichever it is."""
    import fcntl

    lock_path = tmp_path / "agentid-helper.lock"
    held = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    read_end, write_end = os.pipe()
    environ = {
        "AGENTID_HELPER_READY_FD": str(write_end),
        "AGENTID_HELPER_START_LOCK_FD": str(os.dup(held)),  # the daemon's copy
    }
    os.close(held)  # the client exited: the daemon's copy holds the lock alone
    report = StartReport.from_environ(environ)
    assert environ == {}  # no child inherits the names
    other = os.open(lock_path, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        report.ready() if outcome == "ready" else report.failed(5, "bad config")
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # let go
    finally:
        os.close(other)
        os.close(read_end)


def test_a_report_that_never_comes_lets_go_of_the_lock_in_time(tmp_path: Path) -> None:
    """A daemon that hangs before its report holds the start lock no longer than a
    starting client waits for it (contract.START_TIMEOUT_S; here 0.1 s)."""
    import fcntl
    import time

    lock_path = tmp_path / "agentid-helper.lock"
    held = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    read_end, write_end = os.pipe()
    report = StartReport(write_end, held, lock_for_s=0.1)
    other = os.open(lock_path, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the lock was never let go"
                time.sleep(0.02)
        fcntl.flock(other, fcntl.LOCK_UN)
        report.ready()  # late: still written, and the descriptors closed
        assert os.read(read_end, 100) == b"ready\n"
        with pytest.raises(OSError):
            os.fstat(held)
    finally:
        os.close(other)
        os.close(read_end)
