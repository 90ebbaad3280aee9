"""Who runs the daemon, and its process name (status, doctor, ps/pgrep)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from agentid_client import autostart, statusview
from agentid_daemon.process import runmode


def test_client_and_daemon_agree_on_names() -> None:
    """The stdlib-only client cannot import the daemon: its copies are tied here."""
    assert autostart.STARTED_BY_ENV == runmode.STARTED_BY_ENV
    assert set(statusview.RUN_MODES) == {runmode.SYSTEMD, runmode.AUTOSTART, runmode.FOREGROUND}


def test_run_mode_decisions() -> None:
    env = {"AGENTID_HELPER_STARTED_BY": "autostart"}
    assert runmode.run_mode(False, env) == "autostart"
    assert "AGENTID_HELPER_STARTED_BY" not in env  # not inherited by anything we start
    assert runmode.run_mode(False, {}) == "foreground"
    assert runmode.run_mode(True, {"AGENTID_HELPER_STARTED_BY": "autostart"}) == "systemd"
    assert runmode.run_mode(False, {"INVOCATION_ID": "abc"}) == "systemd"


def test_process_name_is_agentid_helperd_when_started_with_python_c() -> None:
    code = (
        "from agentid_daemon.process.runmode import set_process_name; import sys, time;"
        "assert set_process_name(); print('ready', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with open(f"/proc/{proc.pid}/comm") as fh:
            assert fh.read().strip() == "agentid-helperd"
        found = subprocess.run(["pgrep", "-x", "agentid-helperd"], capture_output=True, text=True)
        assert str(proc.pid) in found.stdout.split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_status_view_names_the_run_mode() -> None:
    body = {"daemon": {"pid": 7, "uptime_s": 3, "run_mode": "systemd"}, "entries": []}
    assert "run by systemd unit agentid-helper.service" in statusview.render_status(body)
