"""What a reviewer found trying the client from outside, each against a real daemon.

- ``flush`` on a hung (SIGSTOPped) daemon is exit 3, not "no daemon running";
- ``logs -n TOKEN`` and a token in ``KUBERNETES_EXEC_INFO`` are not echoed;
- ``logs`` under a foreground daemon says where its log is instead of printing
  an earlier autostarted daemon's file, and with no daemon says whose file it is;
- the "retries automatically" hint only follows transient failures;
- ``status`` with no daemon suggests nothing that would fail like autostart did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import HELPER, Env, client_stack
from daemon_procs import daemon_pids
from test_error_redaction import MAX_STDERR_CHARS, assert_not_echoed

from agentid_client.failures import from_response


@pytest.fixture
def env(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    with client_stack(emulator, tmp_path) as stack:
        yield stack


# -- 1. flush on a daemon that does not answer ----------------------------------------


def test_flush_on_a_stopped_daemon_is_exit_3_not_nothing_cached(env: Env) -> None:
    assert env.run("get").returncode == 0
    env.wait_until_ready()  # stopped while it listens, not while it starts
    (pid,) = daemon_pids(env.sock)
    os.kill(pid, signal.SIGSTOP)
    try:
        proc = env.run("flush", "--profile", "app", timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert proc.returncode == 3, proc
    assert "no daemon running" not in proc.stdout + proc.stderr
    assert "did not" in proc.stderr  # the deadline's words: it accepted or did not answer
    # Resumed, it still serves; and with no daemon at all flush has nothing to do.
    assert env.run("get").returncode == 0
    assert env.run("stop").returncode == 0
    gone = env.run("flush", "--profile", "app")
    assert (gone.returncode, gone.stdout) == (0, "no daemon running: nothing cached\n")


# -- 2. a token in logs -n or KUBERNETES_EXEC_INFO ----------------------------------------


def test_logs_lines_does_not_echo_a_pasted_token(env: Env, pasted_token: str) -> None:
    proc = env.run("logs", "-n", pasted_token)
    assert proc.returncode == 2
    assert "--lines must be a number of lines" in proc.stderr
    assert len(proc.stderr) < MAX_STDERR_CHARS
    assert_not_echoed(proc.stdout + proc.stderr, pasted_token)


@pytest.mark.parametrize("field", ["apiVersion", "kind"])
def test_kubernetes_exec_info_does_not_echo_a_token(
    env: Env, pasted_token: str, field: str
) -> None:
    info = json.dumps({"apiVersion": "client.authentication.k8s.io/v1", field: pasted_token})
    proc = env.run("kubectl-credential", "--profile", "app", KUBERNETES_EXEC_INFO=info)
    assert proc.returncode == 2
    assert f"KUBERNETES_EXEC_INFO {field}" in proc.stderr
    assert len(proc.stderr) < MAX_STDERR_CHARS
    assert_not_echoed(proc.stdout + proc.stderr, pasted_token)


# -- 3. logs shows the running daemon's log ----------------------------------------------


def _wait_for_status(env: Env, deadline_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        proc = env.run("status", "--json")
        if proc.returncode == 0:
            body: dict[str, Any] = json.loads(proc.stdout)
            return body
        time.sleep(0.2)
    raise AssertionError("the foreground daemon did not answer")


def test_logs_under_a_foreground_daemon_says_where_its_log_is(env: Env) -> None:
    assert env.run("get").returncode == 0  # an autostarted daemon leaves its log file
    assert env.run("stop").returncode == 0
    log_path = os.path.join(os.path.dirname(env.sock), "agentid-helperd.log")
    old_log = Path(log_path).read_text()
    assert old_log

    # No daemon: the file is shown, saying whose it is.
    none = env.run("logs")
    assert (none.returncode, none.stdout) == (0, old_log)
    assert "no daemon running: showing the last autostarted daemon's log" in none.stderr

    foreground = subprocess.Popen(
        [*HELPER, "daemon"], env=env.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert _wait_for_status(env)["daemon"]["run_mode"] == "foreground"
        proc = env.run("logs")
        assert proc.returncode == 0
        assert proc.stdout == ""  # not the stale file
        assert "runs in the foreground: its log is the terminal it was started in" in proc.stderr
        assert f"{log_path} is an earlier autostarted daemon's" in proc.stderr
    finally:
        foreground.send_signal(signal.SIGTERM)
        foreground.wait(timeout=30)


# -- 4. the retry hint --------------------------------------------------------------------


def _retry_hints(err: Any) -> list[str]:
    return [h for h in err.hints if "next request" in h]


def test_no_retry_hint_on_configuration_or_permanent_errors() -> None:
    """Was: "retries ... automatically in 1 s" after a 0644 secret file or AADSTS90002."""
    config = {
        "error": "configuration_error",
        "error_description": "secret file is readable by others (mode 0644)",
        "next_attempt_in_s": 1,
    }
    err = from_response(500, config, {"retry-after": "1"})
    assert err.exit_code == 5 and _retry_hints(err) == []
    refused = {
        "error": "identity_provider_error",
        "error_description": "AADSTS90002: Tenant not found",
        "aadsts_codes": [90002],
        "next_attempt_in_s": 1,
    }
    err = from_response(502, refused, {"retry-after": "1"})
    assert err.exit_code == 4 and _retry_hints(err) == []


def test_retry_hint_on_transient_errors() -> None:
    unavailable = {"error": "identity_provider_unavailable", "next_attempt_in_s": 3}
    (hint,) = _retry_hints(from_response(503, unavailable))
    assert "automatically in 3 s" in hint
    paused = {"error": "identity_provider_error", "next_attempt_in_s": 30, "rate_limited": True}
    (hint,) = _retry_hints(from_response(502, paused))
    assert "asked for a pause" in hint


# -- 5. status with no daemon -------------------------------------------------------------


def test_status_without_a_daemon_suggests_what_works(env: Env) -> None:
    proc = env.run("status")
    assert proc.returncode == 3
    assert f"no daemon running at {env.sock}" in proc.stderr
    assert "the next `agentid-helper get` starts one" in proc.stderr
    assert "agentid-helper daemon" not in proc.stderr
    assert daemon_pids(env.sock) == []  # status starts none
    off = env.run("status", AGENTID_HELPER_NO_AUTOSTART="1")
    assert off.returncode == 3
    assert "autostart is disabled (AGENTID_HELPER_NO_AUTOSTART=1)" in off.stderr
