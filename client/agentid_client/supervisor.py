"""Who brings the daemon back when no daemon listens: systemd or the client.

Only the cold path imports this module (no daemon answered). When the user
installed the systemd units (``agentid-helper systemd install``), systemd owns
the socket and the daemon: the client never starts a daemon of its own then
(it would lack the service's environment, e.g. ``$CREDENTIALS_DIRECTORY``, and
compete with the unit for the socket path). It asks the user manager to start
``agentid-helper.socket`` instead, once per call, and when that is not
possible it says exactly what to run. Without the units the client starts the
daemon itself (:mod:`.autostart`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # this module is the cold path's first stop: no typing import
if TYPE_CHECKING:
    import subprocess

SOCKET_UNIT = "agentid-helper.socket"
SERVICE_UNIT = "agentid-helper.service"
STATUS_HINT = "see `systemctl --user status agentid-helper` and `agentid-helper doctor`"
SYSTEMCTL_TIMEOUT_S = 10.0


class SystemdStartFailed(Exception):
    """The user manager could not (or would not) start the socket; hints say what to run."""

    def __init__(self, message: str, hints: list[str]):
        super().__init__(message)
        self.hints = hints


def units_installed() -> bool:
    """True when ``agentid-helper systemd install`` put the socket unit in place."""
    from . import paths

    return os.path.isfile(os.path.join(paths.systemd_user_unit_dir(), SOCKET_UNIT))


def manages(socket_path: str) -> bool:
    """True when systemd owns ``socket_path``: the units are installed and it is
    their ``ListenStream=`` (``%t/agentid-helper/agentid-helper.sock``), not a
    path chosen with ``AGENTID_HELPER_SOCKET``."""
    from . import paths

    unit_path = os.path.join(paths.runtime_base(), paths.APP_NAME, paths.SOCKET_NAME)
    return os.path.abspath(socket_path) == os.path.abspath(unit_path) and units_installed()


def _systemctl(*args: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
    import shutil
    import subprocess

    exe = shutil.which("systemctl")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, "--user", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(0.5, min(timeout, SYSTEMCTL_TIMEOUT_S)),
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None


def unit_state(unit: str, timeout: float = SYSTEMCTL_TIMEOUT_S) -> str:
    """``systemctl --user is-active UNIT``: active, inactive, failed, ... or "unknown"."""
    proc = _systemctl("is-active", unit, timeout=timeout)
    if proc is None:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def start_socket(timeout: float) -> None:
    """Ask the user manager to start the socket unit; raise SystemdStartFailed if it cannot.

    A failed unit (a service that crashed until ``StartLimitBurst=`` tripped)
    is not restarted behind the user's back: its cause needs a look first.
    """
    restart = (
        f"then: systemctl --user reset-failed {SOCKET_UNIT} {SERVICE_UNIT} && "
        f"systemctl --user start {SOCKET_UNIT}"
    )
    states = (unit_state(SERVICE_UNIT, timeout), unit_state(SOCKET_UNIT, timeout))
    if "failed" in states:
        raise SystemdStartFailed(
            "the systemd unit agentid-helper.service failed and systemd stopped restarting it",
            [STATUS_HINT, restart],
        )
    proc = _systemctl("start", SOCKET_UNIT, timeout=timeout)
    if proc is None or proc.returncode != 0:
        detail = ""
        if proc is not None:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            detail = f": {lines[0]}" if lines else ""
        raise SystemdStartFailed(
            f"the systemd units are installed but `systemctl --user start {SOCKET_UNIT}` "
            f"failed{detail or ' (no user manager reachable)'}",
            [
                f"run `systemctl --user start {SOCKET_UNIT}` in your session",
                STATUS_HINT,
                "or remove the units (`agentid-helper systemd uninstall`) to let the "
                "client start the daemon itself",
            ],
        )


def run_mode_hint() -> list[str]:
    """What to look at when a daemon accepted a call but did not answer."""
    try:
        if units_installed():
            return [STATUS_HINT]
    except OSError:
        pass
    return ["check `agentid-helper doctor`"]


def stop_units(timeout: float) -> None:
    """``systemctl --user stop`` the socket and the service (the socket first, so
    that nothing starts the service again meanwhile); DaemonUnreachable if it fails."""
    from .failures import DaemonUnreachable

    proc = _systemctl("stop", SOCKET_UNIT, SERVICE_UNIT, timeout=timeout)
    if proc is None or proc.returncode != 0:
        detail = ""
        if proc is not None:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            detail = f": {lines[0]}" if lines else ""
        raise DaemonUnreachable(
            f"`systemctl --user stop {SOCKET_UNIT} {SERVICE_UNIT}` failed"
            f"{detail or ' (no user manager reachable)'}",
            [STATUS_HINT],
        )
