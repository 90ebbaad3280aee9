"""Find daemon processes by the socket they serve (for cleanup and kill tests)."""

from __future__ import annotations

import os


def daemon_pids(sock: str) -> list[int]:
    """Processes running the daemon for ``sock`` (found through their environment)."""
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
        except OSError:
            continue
        if needle in environ and b"agentid_daemon" in cmdline:
            pids.append(int(entry))
    return pids
