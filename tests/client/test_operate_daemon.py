"""Operating the daemon end to end: status shows state, flush says what it dropped,
logs, stop, and the idle exit of an autostarted daemon.

Real client processes and real autostarted daemons (tests/support/client_stack.py) on the
emulator (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from client_stack import HELPER, Env, client_stack
from daemon_procs import daemon_pids
from emulator_config import GRAPH_RESOURCE, write_emulator_config

VAULT = "https://vault.azure.net/.default"


def status_json(env: Env) -> dict[str, Any]:
    proc = env.run("status", "--json")
    assert proc.returncode == 0, proc.stderr
    body: dict[str, Any] = json.loads(proc.stdout)
    return body


def rows_of(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [row for row in body["entries"] if row["kind"] == kind]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def configure(env: Env, emu: Any, workdir: Path, **daemon: Any) -> None:
    """The client_stack profiles (app, user, obo), with ``[daemon]`` settings."""
    write_emulator_config(
        env.config, emu.info, {"secret_file": str(workdir / "bp.secret")}, daemon=daemon or None
    )


# -- status: state, not history ---------------------------------------------------


def test_a_failed_one_off_request_leaves_no_row_but_a_recent_error(
    emulator: Any, tmp_path: Path
) -> None:
    bad_tenant = str(uuid.uuid4())
    with client_stack(emulator, tmp_path) as env:
        good = env.run("get", "--profile", "app")
        assert good.returncode == 0, good.stderr
        bad = env.run("get", "--profile", "app", "--tenant-id", bad_tenant)
        assert bad.returncode == 4
        body = status_json(env)
        # One row per live key: the good resource token and the T1 it rides on.
        resource = rows_of(body, "resource")
        assert [(r["profile"], r["tenant_id"], r["state"]) for r in resource] == [
            ("app", emulator.tenant_id, "valid")
        ]
        t1 = rows_of(body, "t1")
        assert [(r["tenant_id"], r["profiles"]) for r in t1] == [(emulator.tenant_id, ["app"])]
        assert all(row["tenant_id"] != bad_tenant for row in body["entries"])
        # The failure is under recent_errors, with what the client was told.
        (error,) = body["recent_errors"]
        assert (error["profile"], error["tenant_id"], error["background"]) == (
            "app",
            bad_tenant,
            False,
        )
        assert 90002 in error["aadsts_codes"]
        assert error["error"] == "identity_provider_error"
        # A retry of the same mistake is counted, not listed again.
        assert env.run("get", "--profile", "app", "--tenant-id", bad_tenant).returncode == 4
        (error,) = status_json(env)["recent_errors"]
        assert error["count"] == 2
        # The table: one app row (and its T1), the error below it; never a token.
        table = env.run("status").stdout
        lines = table.splitlines()
        assert sum(1 for line in lines if line.startswith("app ")) == 2
        assert "recent errors (1;" in table
        assert good.stdout.strip() not in table
        assert good.stdout.strip() not in json.dumps(body)


# -- flush ---------------------------------------------------------------------------


def test_flush_profile_drops_all_its_scopes_and_says_so(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        for args in (("--profile", "app"), ("--profile", "app", "--scope", VAULT)):
            assert env.run("get", *args).returncode == 0
        assert env.run("get", "--profile", "user").returncode == 0
        flushed = env.run("flush", "--profile", "app")
        assert flushed.returncode == 0, flushed.stderr
        # The user profile's tokens ride on the same agent's T1: it stays for them.
        assert flushed.stdout == ("flushed 2 cached tokens of profile app (2 resource tokens)\n")
        body = status_json(env)
        assert [r["profile"] for r in rows_of(body, "resource")] == ["user"]
        assert len(rows_of(body, "t1")) == 1 and len(rows_of(body, "t2")) == 1
        # The next get re-acquires; flush with nothing cached says so.
        again = env.run("flush", "--profile", "app")
        assert again.stdout == "nothing cached for profile app\n"
        everything = env.run("flush", "--all", "--json")
        assert json.loads(everything.stdout)["dropped"] == {"resource": 1, "t1": 1, "t2": 1}
        assert status_json(env)["entries"] == []


def test_flush_profile_takes_its_exchange_token_when_no_one_else_uses_it(
    emulator: Any, tmp_path: Path
) -> None:
    with client_stack(emulator, tmp_path) as env:
        for args in (("--profile", "app"), ("--profile", "app", "--scope", VAULT)):
            assert env.run("get", *args).returncode == 0
        flushed = env.run("flush", "--profile", "app")
        assert flushed.stdout == (
            "flushed 3 cached tokens of profile app (2 resource tokens, 1 T1 exchange token)\n"
        )
        assert status_json(env)["entries"] == []


def test_flush_profile_takes_the_t2_only_its_mode_used(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        assert env.run("get", "--profile", "app").returncode == 0
        assert env.run("get", "--profile", "user").returncode == 0
        body = status_json(env)
        # T1 serves both profiles; T2 only the AutonomousUser one.
        assert rows_of(body, "t1")[0]["profiles"] == ["app", "user"]
        assert rows_of(body, "t2")[0]["profiles"] == ["user"]
        flushed = env.run("flush", "--profile", "user")
        assert flushed.stdout == (
            "flushed 2 cached tokens of profile user (1 resource token, 1 T2 exchange token)\n"
        )
        body = status_json(env)
        assert sorted(row["kind"] for row in body["entries"]) == ["resource", "t1"]
        assert env.run("get", "--profile", "app").returncode == 0  # still served, from cache


def test_flush_without_a_daemon_says_so_on_stdout(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        proc = env.run("flush", "--profile", "app")
        assert (proc.returncode, proc.stdout) == (0, "no daemon running: nothing cached\n")
        assert daemon_pids(env.sock) == []  # flush starts no daemon


# -- logs ---------------------------------------------------------------------------


def test_logs_prints_the_autostart_log(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        none_yet = env.run("logs")
        assert none_yet.returncode == 0
        assert "no daemon log at" in none_yet.stderr
        assert env.run("get").returncode == 0
        env.wait_until_ready()  # its start's lines are all written
        log_path = os.path.join(os.path.dirname(env.sock), "agentid-helperd.log")
        proc = env.run("logs")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == Path(log_path).read_text()
        assert any(json.loads(line)["event"] == "daemon ready" for line in proc.stdout.splitlines())
        last = env.run("logs", "-n", "1").stdout
        assert last == Path(log_path).read_text().splitlines(keepends=True)[-1]
        # status and doctor say where the log is.
        assert f"log: {log_path}" in env.run("status").stdout
        assert f"daemon log: {log_path}" in env.run("doctor").stdout


def test_logs_follow_prints_what_the_daemon_logs_next(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        assert env.run("get").returncode == 0
        follower = subprocess.Popen(
            [*HELPER, "logs", "-f", "-n", "0"],
            env=env.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(1.0)  # it has printed nothing (-n 0) and follows the file
            marker = "https://vault.azure.net/.default"
            assert env.run("get", "--scope", marker).returncode == 0
            assert follower.stdout is not None
            selector = selectors.DefaultSelector()
            selector.register(follower.stdout, selectors.EVENT_READ)
            seen = ""
            deadline = time.monotonic() + 20
            while '"path": "/v1/token"' not in seen and time.monotonic() < deadline:
                if selector.select(timeout=0.5):  # raw reads: no buffer hides a line
                    seen += os.read(follower.stdout.fileno(), 65536).decode()
            assert '"path": "/v1/token"' in seen
            assert "daemon ready" not in seen  # the old lines were not repeated
        finally:
            follower.send_signal(signal.SIGINT)
            code = follower.wait(timeout=10)
        assert code == 0  # Ctrl-C is how `logs -f` ends


# -- stop -----------------------------------------------------------------------------


def test_stop_stops_an_autostarted_daemon_and_says_so(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        assert env.run("get").returncode == 0
        (pid,) = daemon_pids(env.sock)
        proc = env.run("stop")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"stopped the daemon (pid {pid}, autostarted by the client)\n"
        assert not os.path.lexists(env.sock)
        assert daemon_pids(env.sock) == []
        assert not os.path.exists(f"/proc/{pid}")
        again = env.run("stop")
        assert (again.returncode, again.stdout) == (
            0,
            f"no daemon running (nothing answers at {env.sock})\n",
        )
        # The next command starts a new one.
        assert env.run("get").returncode == 0
        assert daemon_pids(env.sock) not in ([], [pid])


# -- exit when idle -------------------------------------------------------------------


def test_an_autostarted_daemon_exits_when_idle_and_the_next_get_starts_another(
    emulator: Any, tmp_path: Path
) -> None:
    with client_stack(emulator, tmp_path) as env:
        configure(env, emulator, tmp_path, exit_when_idle_s=2)
        assert env.run("get").returncode == 0
        (first,) = daemon_pids(env.sock)
        assert status_json(env)["daemon"]["exit_when_idle_s"] == 2
        time.sleep(3.5)  # longer than exit_when_idle_s, but a token is cached
        assert daemon_pids(env.sock) == [first]
        assert env.run("flush", "--all").returncode == 0  # now nothing is cached
        wait_for(lambda: not daemon_pids(env.sock), 15, "the idle daemon to exit")
        assert not os.path.lexists(env.sock)
        log = Path(os.path.dirname(env.sock), "agentid-helperd.log").read_text()
        assert "exiting: nothing cached" in log
        proc = env.run("get")
        assert proc.returncode == 0, proc.stderr
        (second,) = daemon_pids(env.sock)
        assert second != first


def test_exit_when_idle_zero_keeps_an_autostarted_daemon(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as env:
        configure(env, emulator, tmp_path, exit_when_idle_s=0)
        assert env.run("status").returncode == 3  # status starts no daemon
        assert env.run("get").returncode == 0
        (pid,) = daemon_pids(env.sock)
        assert env.run("flush", "--all").returncode == 0
        time.sleep(3)
        assert daemon_pids(env.sock) == [pid]
        assert "idle exit" not in env.run("status").stdout


def test_daemon_settings_reach_the_idle_exit(emulator: Any, tmp_path: Path) -> None:
    """The schema default: an autostarted daemon without the key exits after 900 s idle."""
    with client_stack(emulator, tmp_path) as env:
        configure(env, emulator, tmp_path, idle_timeout_s=60)
        assert env.run("get", "--scope", GRAPH_RESOURCE + "/.default").returncode == 0
        body = status_json(env)
        assert body["daemon"]["exit_when_idle_s"] == 900
        assert "idle exit: after 15m00s with nothing cached" in env.run("status").stdout
