"""``exec`` with the managed identity endpoint: CMD's port is held for CMD's whole life.

The endpoint's TCP listener (127.0.0.1, port 0) is bound here, not in the
daemon, and sent to the daemon with the session request (SCM_RIGHTS). This
process and CMD keep their copies, so the port in ``IDENTITY_ENDPOINT`` is
never free while CMD lives: a daemon that crashes, restarts or is upgraded
closes only its own copy, and no other user can bind the port meanwhile.
Connections made while no daemon serves wait in the listen backlog.

So that a restarted daemon serves the endpoint again, this process stays
beside CMD (CMD runs as its child) and registers the same listener and
header again when the daemon it registered with exits. It is otherwise
invisible: CMD's exit status is ours, and death by a signal is passed on by
dying of the same signal; signals sent to us are forwarded to CMD, except
the terminal's Ctrl-C/Ctrl-\\ (which already reached CMD, in our process
group). If this process is killed outright (SIGKILL), the session ends and
the endpoint goes unserved, but CMD still holds the port: nobody else gets it.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import select
import signal
import sys
import time

from . import daemon_api
from .failures import EXIT_CONFIG, ClientError, cannot_run

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any, TextIO

LISTEN_BACKLOG = 128
#: How often the daemon's liveness is checked while CMD runs (seconds).
DAEMON_CHECK_S = 0.5
#: One attempt to register again with a restarted daemon; then CMD's signals are
#: looked at before the next attempt.
REREGISTER_TIMEOUT_S = 5.0
#: Pauses between failed attempts: first, cap (seconds).
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 30.0
#: Signals forwarded to CMD (SIGCHLD tells us CMD ended).
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGALRM,
)
#: Sent by the terminal to its whole foreground process group, CMD included.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel (the tty driver) sent
_CORE_SIGNALS = (
    signal.SIGQUIT,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGFPE,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGSYS,
    signal.SIGTRAP,
)


def open_endpoint_listener() -> _socket.socket:
    """The endpoint's listening socket on 127.0.0.1, on a port the kernel picks."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ClientError(
            f"exec: cannot open the managed identity endpoint on 127.0.0.1: {exc.strerror}",
            EXIT_CONFIG,
        ) from None
    return sock


class EndpointSession:
    """This exec's session: its listener, its header, the daemon that serves it."""

    def __init__(self, fields: dict[str, Any], listener: _socket.socket) -> None:
        self.fields = fields
        self.listener = listener
        self.header: str | None = None
        self.endpoint: str | None = None
        self.daemon_pidfd: int | None = None
        self.watching = False  # the daemon told us its pid
        self.retry_at = 0.0  # time.monotonic() of the next attempt to register again
        self.retry_pause_s = RETRY_FIRST_S

    def register(self, timeout: float | None = None) -> None:
        """Register (again, with the same header, once there is one) with the daemon."""
        payload = dict(self.fields)
        if self.header is not None:
            payload["identity_header"] = self.header
        answer = daemon_api.register_identity_session(
            payload, self.listener.fileno(), timeout=timeout
        )
        if self.header is not None and answer["identity_header"] != self.header:
            raise ClientError("the daemon answered with another identity header", EXIT_CONFIG)
        self.header, self.endpoint = answer["identity_header"], answer["identity_endpoint"]
        daemon_pid = answer.get("daemon_pid")
        self.watching = isinstance(daemon_pid, int) and not isinstance(daemon_pid, bool)
        self.daemon_pidfd = _pidfd_or_none(daemon_pid) if self.watching else None

    def daemon_gone(self) -> bool:
        """True once the daemon that serves us has exited (never for one that gave no pid)."""
        if not self.watching:
            return False
        if self.daemon_pidfd is None:
            return True
        ready, _, _ = select.select([self.daemon_pidfd], [], [], 0)
        if not ready:
            return False
        os.close(self.daemon_pidfd)
        self.daemon_pidfd = None
        return True


def _pidfd_or_none(pid: Any) -> int | None:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None  # gone already: registered again on the next check


def run(argv: list[str], env: dict[str, str], session: EndpointSession, stderr: TextIO) -> int:
    """Run CMD as our child while keeping its session served; returns its exit status."""
    mask = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    os.set_inheritable(session.listener.fileno(), True)  # CMD holds the port too
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            env,
            setsigmask=(),
            # Python ignores SIGPIPE and SIGXFSZ; ignored dispositions survive exec.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except OSError as exc:
        raise cannot_run(argv[0], exc) from None
    finally:
        os.set_inheritable(session.listener.fileno(), False)
    status = _supervise(pid, session, mask, stderr)
    session.listener.close()
    return _pass_on(status)


def _supervise(
    pid: int, session: EndpointSession, mask: set[signal.Signals], stderr: TextIO
) -> int:
    warned = False
    while True:
        info = signal.sigtimedwait(mask, DAEMON_CHECK_S)
        if info is not None and info.si_signo != signal.SIGCHLD:
            tty_sent = info.si_code == SI_KERNEL and info.si_signo in TERMINAL_SIGNALS
            if not tty_sent:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, info.si_signo)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if session.daemon_gone() and time.monotonic() >= session.retry_at:
            try:
                session.register(timeout=REREGISTER_TIMEOUT_S)
            except ClientError as exc:
                if not warned:
                    stderr.write(
                        "agentid-helper: exec: the daemon went away; the managed identity "
                        f"endpoint waits until it is back ({exc.message})\n"
                    )
                    stderr.flush()
                    warned = True
                session.retry_at = time.monotonic() + session.retry_pause_s
                session.retry_pause_s = min(session.retry_pause_s * 2, RETRY_CAP_S)
            else:
                warned, session.retry_pause_s = False, RETRY_FIRST_S


def _pass_on(status: int) -> int:
    """CMD's exit code, or die of the signal that killed it (as exec did before)."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return code
    sig = -code
    if sig in _CORE_SIGNALS:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # CMD dumped its core, not us
    sys.stdout.flush()
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    return 128 + sig  # the signal did not end us (it cannot be SIGKILL/SIGSTOP here)
