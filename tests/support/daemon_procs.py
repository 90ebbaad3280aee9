"""Find daemon processes by the socket they serve (for cleanup and kill tests)."""

from __future__ import annotations

import os

from agentid_daemon.process.engine_host import HOST_PROCESS_NAME


def daemon_pids(sock: str, *, hosts: bool = False) -> list[int]:
    """Processes running the daemon for ``sock`` (found through their environment).

    An autostarted daemon's engine host (process/engine_host.py, named
    ``HOST_PROCESS_NAME``) is not a daemon: listed only with ``hosts``, and
    then alone."""
    pids = []
    needle = f"AGENTID_HELPER_SOCKET={sock}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as fh:
                is_host = fh.read().strip() == HOST_PROCESS_NAME
        except OSError:
            continue
        if needle in environ and b"agentid_daemon" in cmdline and is_host == hosts:
            pids.append(int(entry))
    return pids
