"""Tell the client that autostarted this daemon how the start went, without polling.

The client (``agentid_client.autostart``) passes the write end of a pipe and
names it in ``AGENTID_HELPER_READY_FD`` (``contract.READY_FD_ENV``). The
daemon writes one line and closes the pipe: ``ready`` once its socket accepts
connections, or ``exit <status> <error line>`` when it cannot start (a
configuration error with its did-you-mean, a socket it may not use), so the
waiting client reports the daemon's own words and exit status instead of
"exited with status 5, see the log". A daemon started any other way (systemd,
a terminal) has no such pipe and this is a no-op; systemd gets READY=1 from
:mod:`.sdnotify` instead.

A client whose first request the engine host answers before the daemon
listens (``contract.FIRST_ANSWER_FD_ENV``, ``first_answer.py``) may exit
before the report: it passes its start lock (``contract.START_LOCK_FD_ENV``)
too, which this report holds and lets go with its line, so that another
client waits for the daemon to listen instead of starting a second one; and
at the latest after ``contract.START_TIMEOUT_S``, as long as a starting client
waits, so that a daemon that hangs before its report holds no one up longer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import MutableMapping

from agentid_client.contract import (
    READY_FD_ENV,
    READY_LINE,
    START_FAILED_PREFIX,
    START_LOCK_FD_ENV,
    START_TIMEOUT_S,
)

from .inherited import take_fd


class StartReport:
    """The pipe to the starting client, or nothing; each method writes at most once.
    The client's start lock, when it passed it, is let go with the line."""

    def __init__(
        self, fd: int | None, lock_fd: int | None = None, *, lock_for_s: float = START_TIMEOUT_S
    ) -> None:
        self._fd = fd
        self._lock_fd = lock_fd
        self._lock_guard = threading.Lock()  # the timer's unlock against _send's close
        self._timer: threading.Timer | None = None
        if lock_fd is not None:
            self._timer = threading.Timer(lock_for_s, self._let_go_of_the_lock)
            self._timer.daemon = True
            self._timer.start()

    def _let_go_of_the_lock(self) -> None:
        """No report yet after ``lock_for_s``: unlock (the descriptor stays, _send closes it)."""
        with self._lock_guard:
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> StartReport:
        """Take the descriptors named in the environment (:func:`take_fd`)."""
        env = os.environ if environ is None else environ
        return cls(take_fd(env, READY_FD_ENV), take_fd(env, START_LOCK_FD_ENV))

    def ready(self) -> None:
        """The socket accepts connections: the client may send its request now."""
        self._send(READY_LINE)

    def failed(self, status: int, error_line: str) -> None:
        """The daemon exits with ``status``; ``error_line`` is what it printed on stderr."""
        first = error_line.strip().splitlines()[0] if error_line.strip() else "failed to start"
        self._send(f"{START_FAILED_PREFIX}{status} {first}")

    def _send(self, line: str) -> None:
        fd, self._fd = self._fd, None
        with self._lock_guard:
            lock_fd, self._lock_fd = self._lock_fd, None
        if self._timer is not None:
            self._timer.cancel()
        try:
            if fd is not None:
                os.write(fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # the client gave up waiting, or was answered already: nothing to tell
        finally:
            for held in (fd, lock_fd):
                if held is not None:
                    with contextlib.suppress(OSError):
                        os.close(held)  # the lock's last holder: other clients go on
