"""``agentid-helper stop``: stop the daemon, and say what was done.

- The systemd units run it (``agentid-helper systemd install``, default
  socket): ``systemctl --user stop agentid-helper.socket agentid-helper.service``,
  so that the socket does not start it again at once; the next command that
  needs the daemon starts the socket again (supervisor.py).
- Otherwise: ``POST /v1/shutdown`` asks the daemon to stop as SIGTERM would
  (stop accepting, remove its socket, let in-flight requests finish), and the
  command waits until the socket is gone and the process has exited.
- No daemon answers on the socket, and none is being started: "no daemon
  running", exit 0.

Exit codes: 0 stopped, or nothing to stop; 3 the daemon (or systemctl) did not
stop it in time, or the socket is not trusted (trust.py).
"""

from __future__ import annotations

import os
import time
from typing import TextIO

from . import daemon_api
from .autostart import answers, wait_for_a_start
from .failures import EXIT_OK, DaemonNotRunning, DaemonUnreachable
from .statusview import RUN_MODES
from .supervisor import SERVICE_UNIT, SOCKET_UNIT, STATUS_HINT, manages, stop_units

STOP_TIMEOUT_S = 15.0
POLL_S = 0.05


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another uid took the pid: not ours to wait for, but it exists
    return False


def run_stop(socket_path: str, out: TextIO, *, timeout: float = STOP_TIMEOUT_S) -> int:
    if manages(socket_path):
        stop_units(timeout)
        out.write(
            f"stopped {SOCKET_UNIT} and {SERVICE_UNIT} (systemd); the next command that "
            "needs the daemon starts them again\n"
        )
        return EXIT_OK
    # A daemon about to listen (its starter was answered before it listens) is
    # not "no daemon": wait for a start under way, then look again.
    if not answers(socket_path) and not (
        wait_for_a_start(socket_path, time.monotonic() + timeout) and answers(socket_path)
    ):
        out.write(f"no daemon running (nothing answers at {socket_path})\n")
        return EXIT_OK
    try:
        body = daemon_api.call_ok("POST", "/v1/shutdown", autostart=False, timeout=timeout)
    except DaemonNotRunning:  # it went away since the check above
        out.write(f"no daemon running (nothing answers at {socket_path})\n")
        return EXIT_OK
    pid = int(body.get("pid") or 0) if isinstance(body, dict) else 0
    mode = str(body.get("run_mode") or "") if isinstance(body, dict) else ""
    who = f"pid {pid}" + (f", {RUN_MODES.get(mode, mode)}" if mode else "")
    deadline = time.monotonic() + timeout
    while answers(socket_path):
        if time.monotonic() >= deadline:
            raise DaemonUnreachable(
                f"the daemon ({who}) was asked to stop but still answers after {timeout:g} s",
                [STATUS_HINT if mode == "systemd" else f"kill it: kill {pid}"],
            )
        time.sleep(POLL_S)
    while pid > 0 and not _process_gone(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if pid > 0 and not _process_gone(pid):
        out.write(f"the daemon ({who}) closed its socket and is finishing in-flight requests\n")
        return EXIT_OK
    out.write(f"stopped the daemon ({who})\n")
    return EXIT_OK
