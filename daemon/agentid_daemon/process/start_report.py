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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import MutableMapping

from agentid_client.contract import READY_FD_ENV, READY_LINE, START_FAILED_PREFIX


class StartReport:
    """The pipe to the starting client, or nothing; each method writes at most once."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> StartReport:
        """Take the descriptor named in the environment (and forget the name: no child
        inherits it); a missing, malformed or closed descriptor means no report."""
        env = os.environ if environ is None else environ
        raw = env.pop(READY_FD_ENV, "")
        if not raw.isdigit():
            return cls(None)
        fd = int(raw)
        try:
            os.set_inheritable(fd, False)
        except OSError:
            return cls(None)
        return cls(fd)

    def ready(self) -> None:
        """The socket accepts connections: the client may send its request now."""
        self._send(READY_LINE)

    def failed(self, status: int, error_line: str) -> None:
        """The daemon exits with ``status``; ``error_line`` is what it printed on stderr."""
        first = error_line.strip().splitlines()[0] if error_line.strip() else "failed to start"
        self._send(f"{START_FAILED_PREFIX}{status} {first}")

    def _send(self, line: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # the client gave up waiting: nothing to tell
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
