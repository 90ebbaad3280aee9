"""kill -9 of an autostarted daemon mid-traffic: the next client call starts a new one.

The daemon is started by the client's autostart in a private runtime dir; the
SIGKILL leaves its socket file behind (stale). The next ``agentid-helper get``
must replace it and succeed.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_procs import daemon_pids
from emulator_harness import Emulator
from rel_stack import HelperSandbox, describe, poll_until, short_tempdir, stack_config

CLIENT_TIMEOUT_S = 60


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def autostart_sandbox(emulator: Emulator) -> Iterator[HelperSandbox]:
    with short_tempdir() as root:
        sandbox = HelperSandbox.create(root / "h", {"AGENTID_HELPER_NO_AUTOSTART": None})
        secret = sandbox.write_secret("bp.secret", emulator.blueprint_secret)
        sandbox.write_config(stack_config(emulator, secret))
        try:
            yield sandbox
        finally:
            for pid in daemon_pids(str(sandbox.socket_path)):
                os.kill(pid, signal.SIGKILL)


def test_kill9_mid_traffic_then_autostart_replaces_stale_socket(
    autostart_sandbox: HelperSandbox,
) -> None:
    sandbox = autostart_sandbox
    sock = str(sandbox.socket_path)
    first = sandbox.client("get", "--profile", "app", timeout=CLIENT_TIMEOUT_S)
    assert first.returncode == 0, describe(first)
    (old_pid,) = daemon_pids(sock)

    # Traffic in flight while the daemon dies: those calls may fail (exit 3,
    # never a hang or a traceback); afterwards every call must succeed.
    stop = threading.Event()
    outcomes: list[tuple[int, str]] = []

    def traffic() -> None:
        while not stop.is_set():
            proc = sandbox.client(
                "get",
                "--profile",
                "user",
                timeout=CLIENT_TIMEOUT_S,
                env={"AGENTID_HELPER_NO_AUTOSTART": "1"},
            )
            outcomes.append((proc.returncode, proc.stderr))

    workers = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    poll_until(lambda: len(outcomes) >= 3, timeout=30, what="traffic to flow")
    os.kill(old_pid, signal.SIGKILL)
    poll_until(lambda: not _alive(old_pid), timeout=10, what="the daemon to die")
    assert Path(sock).exists(), "expected a stale socket file after SIGKILL"
    poll_until(
        lambda: any(code != 0 for code, _ in outcomes[3:]),
        timeout=30,
        what="a call to notice the dead daemon",
    )
    stop.set()
    for worker in workers:
        worker.join(timeout=CLIENT_TIMEOUT_S)
    for code, stderr in outcomes:
        assert code in (0, 3), stderr
        assert "Traceback" not in stderr, stderr

    again = sandbox.client("get", "--profile", "app", "--format", "json", timeout=CLIENT_TIMEOUT_S)
    assert again.returncode == 0, describe(again)
    new_pids = daemon_pids(sock)
    assert len(new_pids) == 1, new_pids
    assert new_pids[0] != old_pid, new_pids
    for profile in ("app", "user"):
        proc = sandbox.client("get", "--profile", profile, timeout=CLIENT_TIMEOUT_S)
        assert proc.returncode == 0, describe(proc)


def test_engine_host_exits_after_the_switch_and_dies_with_its_daemon(
    autostart_sandbox: HelperSandbox,
) -> None:
    """The autostarted daemon's engine host (process/engine_host.py) is gone soon
    after the first answer, and whatever is left of it goes with a kill -9."""
    sandbox = autostart_sandbox
    sock = str(sandbox.socket_path)
    first = sandbox.client("get", "--profile", "app", timeout=CLIENT_TIMEOUT_S)
    assert first.returncode == 0, describe(first)
    hosts = daemon_pids(sock, hosts=True)
    assert len(daemon_pids(sock)) == 1
    assert len(hosts) <= 1
    poll_until(lambda: not any(_alive(pid) for pid in hosts), timeout=15)
    again = sandbox.client("get", "--profile", "app", "--min-validity", "3599", timeout=60)
    assert again.returncode == 0, describe(again)
    (pid,) = daemon_pids(sock)
    os.kill(pid, signal.SIGKILL)
    poll_until(lambda: not daemon_pids(sock, hosts=True) and not _alive(pid), timeout=15)


def test_an_autostarted_daemons_first_legs_are_made_once(
    autostart_sandbox: HelperSandbox, emulator: Emulator
) -> None:
    """The engine host makes the waiting request's legs before the daemon listens
    (process/engine_host.py, first_legs); the broker's calls are answered with
    them, so the identity provider sees T1 and the resource token once each, and a
    second scope costs its own leg only."""
    sandbox = autostart_sandbox
    emulator.reset()
    first = sandbox.client("get", "--profile", "app", timeout=CLIENT_TIMEOUT_S)
    assert first.returncode == 0, describe(first)
    legs = emulator.stats()["token_requests"]["by_leg"]
    assert (legs.get("t1"), legs.get("autonomous_app")) == (1, 1), legs
    other = sandbox.client(
        "get", "--profile", "app", "--scope", "https://vault.azure.net/.default", timeout=60
    )
    assert other.returncode == 0, describe(other)
    legs = emulator.stats()["token_requests"]["by_leg"]
    assert (legs.get("t1"), legs.get("autonomous_app")) == (1, 2), legs


def _get_json(sandbox: HelperSandbox) -> dict[str, object]:
    proc = sandbox.client("get", "--profile", "app", "--format", "json", timeout=CLIENT_TIMEOUT_S)
    assert proc.returncode == 0, describe(proc)
    body = json.loads(proc.stdout)
    assert isinstance(body, dict)
    return body


def test_the_first_answer_is_the_engine_hosts_and_the_daemon_caches_it(
    autostart_sandbox: HelperSandbox, emulator: Emulator
) -> None:
    """The engine host answers the first call on the client's pair
    (process/first_answer.py); the daemon caches that very token from the same
    legs: the next call is a cache hit with the same token and times."""
    sandbox = autostart_sandbox
    emulator.reset()
    first = _get_json(sandbox)
    assert first["source"] == "identity_provider"
    log = sandbox.socket_path.with_name("agentid-helperd.log")
    poll_until(lambda: "request answered by the engine host" in log.read_text(), timeout=20)
    again = _get_json(sandbox)
    assert again["source"] == "cache"
    for field in ("access_token", "expires_on", "refresh_on", "scope", "tenant_id"):
        assert again[field] == first[field], field
    legs = emulator.stats()["token_requests"]["by_leg"]
    assert (legs.get("t1"), legs.get("autonomous_app")) == (1, 1), legs


# The client's own code with the daemon's start held up after the fork: the parent
# never listens, its engine host runs as always.
HELD_START = """
import sys
from agentid_client import autostart, cli
autostart._DAEMON_CODE = (
    "from agentid_daemon.process.engine_fork import start_from_environ; "
    "start_from_environ(); import time; time.sleep(120)"
)
sys.exit(cli.main(["get", "--profile", "app", "--format", "json"]))
"""


def test_the_first_call_is_answered_while_its_daemon_is_still_starting(
    autostart_sandbox: HelperSandbox,
) -> None:
    """Its answer does not wait for the daemon's own start (trio and the rest): the
    host answers before the daemon listens, and the daemon holds the client's start
    lock until it does, so no other client starts a second one meanwhile."""
    sandbox = autostart_sandbox
    proc = subprocess.run(
        [sys.executable, "-c", HELD_START],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
    )
    assert proc.returncode == 0, describe(proc)
    assert json.loads(proc.stdout)["source"] == "identity_provider"
    sock = sandbox.socket_path
    assert not sock.exists()  # nothing listens: the answer came from the host
    lock = os.open(sock.with_name("agentid-helper.lock"), os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the starting daemon
    finally:
        os.close(lock)
    (starting,) = daemon_pids(str(sock))
    (host,) = daemon_pids(str(sock), hosts=True)
    os.kill(starting, signal.SIGKILL)
    poll_until(lambda: not _alive(host), timeout=15)  # it dies with its parent
