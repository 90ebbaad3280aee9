"""How this daemon runs (systemd unit, autostarted by the client, foreground) and its name.

``status`` and ``doctor`` show the run mode so that a user who finds two
daemons, or a daemon without ``$CREDENTIALS_DIRECTORY``, knows whose it is.
The client's autostart marks the daemons it spawns with
``AGENTID_HELPER_STARTED_BY=autostart`` (the client's ``autostart.STARTED_BY_ENV``:
tests/daemon/process/test_runmode.py ties the two names); systemd marks its services with
``INVOCATION_ID`` and passes the socket in ``LISTEN_FDS``. The client words
the modes (``statusview.RUN_MODES``, tied by the same test).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PROCESS_NAME = "agentid-helperd"
STARTED_BY_ENV = "AGENTID_HELPER_STARTED_BY"

SYSTEMD = "systemd"
AUTOSTART = "autostart"
FOREGROUND = "foreground"


def run_mode(systemd_socket: bool, environ: MutableMapping[str, str] | None = None) -> str:
    """Decide (and forget the markers, so that children do not inherit them)."""
    env = os.environ if environ is None else environ
    started_by = env.pop(STARTED_BY_ENV, "")
    if systemd_socket or env.get("INVOCATION_ID"):
        return SYSTEMD
    if started_by == AUTOSTART:
        return AUTOSTART
    return FOREGROUND


def set_process_name(name: str = PROCESS_NAME) -> bool:
    """Name the process ``agentid-helperd`` (``/proc/PID/comm``: what ``ps -e`` and
    ``pgrep`` match) however it was started: ``python -c`` by autostart, or
    ``agentid-helper daemon``. Returns False where the kernel refuses."""
    try:
        with open("/proc/self/comm", "w") as fh:
            fh.write(name[:15])  # TASK_COMM_LEN - 1
        return True
    except OSError:
        return False
