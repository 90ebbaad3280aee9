"""``agentid-helper logs [-f] [--lines N]``: where the daemon's log is, and showing it.

Where the log goes depends on who runs the daemon:

- the client autostarted it (autostart.py): its JSON lines are appended to
  ``agentid-helperd.log`` next to the socket (``agentid-helperd.log.1`` is the
  previous generation);
- the systemd units run it (``agentid-helper systemd install``): the journal,
  ``journalctl --user -u agentid-helper.service``, which this command runs;
- it runs in the foreground (``agentid-helper daemon``): its own terminal.

``status`` and ``doctor`` show the same place (:func:`describe`). The file is
opened like every file of the socket directory: only once the directory passes
the private directory rule, never through a symlink.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from typing import Any, TextIO

from . import private_dir
from .autostart import LOG_NAME
from .failures import EXIT_CONFIG, EXIT_OK, ClientError, DaemonNotRunning
from .supervisor import SERVICE_UNIT, manages

DEFAULT_LINES = 100
FOLLOW_POLL_S = 0.25
# Asking the daemon its run mode: a daemon that does not answer by then is hung.
STATUS_TIMEOUT_S = 2.0
_BLOCK = 64 * 1024


def journal_command(lines: int, follow: bool) -> list[str]:
    cmd = ["journalctl", "--user", "-u", SERVICE_UNIT, "--no-pager", "-n", str(lines)]
    return [*cmd, "-f"] if follow else cmd


def autostart_log_path(socket_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(socket_path)), LOG_NAME)


def describe(run_mode: str | None, socket_path: str) -> str:
    """Where the log of a daemon of ``run_mode`` (status' run_mode) serving ``socket_path`` is."""
    if run_mode == "systemd":
        return f"journalctl --user -u {SERVICE_UNIT}"
    if run_mode == "foreground":
        return "the terminal it was started in (started in the foreground)"
    return autostart_log_path(socket_path)


def _last_lines(fd: int, count: int) -> tuple[bytes, int]:
    """The last ``count`` lines of the open file and the offset where it ends."""
    end = os.fstat(fd).st_size
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= count:
        step = min(_BLOCK, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:] if count else []), end


def _open_log(path: str) -> int | None:
    directory, name = os.path.split(path)
    if not os.path.lexists(path):
        return None
    private_dir.check_private_dir(directory)
    return private_dir.open_private_file(directory, name, os.O_RDONLY)


def show_file(
    path: str,
    out: TextIO,
    *,
    lines: int = DEFAULT_LINES,
    follow: bool = False,
    stop_after_s: float | None = None,
) -> bool:
    """Print the file's last ``lines`` lines; with ``follow``, then what is appended
    (a rotated file is reopened) until interrupted or ``stop_after_s``. False when
    there is no log file."""
    try:
        fd = _open_log(path)
    except private_dir.PrivateDirError as exc:
        raise ClientError(f"logs: refusing {exc}", EXIT_CONFIG) from None
    if fd is None:
        return False
    try:
        head, pos = _last_lines(fd, lines)
        out.write(head.decode("utf-8", "replace"))
        out.flush()
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        while follow and (deadline is None or time.monotonic() < deadline):
            time.sleep(FOLLOW_POLL_S)
            try:
                current = os.stat(path)
            except OSError:
                continue  # between the rename and the new file of a rotation
            if current.st_ino != os.fstat(fd).st_ino or current.st_size < pos:
                os.close(fd)
                reopened = _open_log(path)
                if reopened is None:
                    fd = os.open(os.devnull, os.O_RDONLY)
                    continue
                fd, pos = reopened, 0
            chunk = os.pread(fd, max(0, current.st_size - pos), pos)
            if chunk:
                pos += len(chunk)
                out.write(chunk.decode("utf-8", "replace"))
                out.flush()
    except private_dir.PrivateDirError as exc:
        raise ClientError(f"logs: refusing {exc}", EXIT_CONFIG) from None
    finally:
        os.close(fd)
    return True


def _show_journal(out: TextIO, lines: int, follow: bool) -> int:
    exe = shutil.which("journalctl")
    if exe is None:
        raise ClientError(
            "logs: the systemd units run the daemon but journalctl is not installed",
            EXIT_CONFIG,
        )
    out.flush()
    with contextlib.suppress(KeyboardInterrupt):  # the end of `logs -f`
        subprocess.run([exe, *journal_command(lines, follow)[1:]], check=False)
    return EXIT_OK


def _running_daemon(socket_path: str) -> tuple[dict[str, Any] | None, str]:
    """The running daemon's status line (``daemon`` of /v1/status) and, when none
    is known, why: "" (one answered), "not running", or the error in words."""
    from . import daemon_api  # cold path

    try:
        body = daemon_api.call_ok(
            "GET", "/v1/status", autostart=False, timeout=STATUS_TIMEOUT_S, socket_path=socket_path
        )
    except DaemonNotRunning:
        return None, "not running"
    except ClientError as exc:  # hung, untrusted, an old daemon: its mode is unknown
        return None, exc.message
    daemon = body.get("daemon") if isinstance(body, dict) else None
    return (daemon, "") if isinstance(daemon, dict) else (None, "no run mode in its status")


def run_logs(socket_path: str, out: TextIO, err: TextIO, *, lines: int, follow: bool) -> int:
    """The ``logs`` command: the log of the daemon that runs, where it is.

    The systemd units' daemon: the journal. A foreground daemon: its terminal,
    which this command cannot show (it says so rather than print the file an
    earlier autostarted daemon left). An autostarted one, or none: the autostart
    log, with a note on stderr when no daemon runs (the file is then the last
    autostarted daemon's).
    """
    if manages(socket_path):
        return _show_journal(out, lines, follow)
    daemon, why_unknown = _running_daemon(socket_path)
    mode = daemon.get("run_mode") if daemon else None
    if mode == "systemd":
        return _show_journal(out, lines, follow)
    path = autostart_log_path(socket_path)
    if mode == "foreground":
        err.write(
            f"agentid-helper: the daemon (pid {daemon.get('pid', '?') if daemon else '?'}) "
            f"runs in the foreground: its log is {describe(mode, socket_path)}"
            + (f"; {path} is an earlier autostarted daemon's\n" if os.path.lexists(path) else "\n")
        )
        return EXIT_OK
    if daemon is None and os.path.lexists(path):
        who = "no daemon running" if why_unknown == "not running" else why_unknown
        err.write(f"agentid-helper: {who}: showing the last autostarted daemon's log\n")
        err.flush()
    try:
        found = show_file(path, out, lines=lines, follow=follow)
    except KeyboardInterrupt:  # the end of `logs -f`
        return EXIT_OK
    if not found:
        err.write(
            f"agentid-helper: no daemon log at {path}: no daemon was autostarted for this "
            "socket (one run in the foreground logs to its terminal)\n"
        )
    return EXIT_OK
