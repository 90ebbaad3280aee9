"""sd_notify(3) over ``NOTIFY_SOCKET`` with trio sockets.

systemd's ``Type=notify`` services tell the manager when they are ready
(``READY=1``), what they are doing (``STATUS=...``), that they are alive
(``WATCHDOG=1``, at half of ``WATCHDOG_USEC``) and that they are stopping
(``STOPPING=1``). Without ``NOTIFY_SOCKET`` every call is a no-op, so the
daemon code can call these unconditionally.

The notification socket is a ``SOCK_DGRAM`` Unix socket; a leading ``@``
names an abstract-namespace socket (the ``@`` becomes a NUL byte).
Failures to notify are logged, never raised: systemd being unreachable must
not take the daemon down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field
from typing import Any

import trio

from ..core.errors import clip_at_word
from ..core.logs import get_logger

log = get_logger("agentid_daemon.process.sdnotify")

# How often STATUS= is refreshed when there is no watchdog to piggyback on.
STATUS_INTERVAL_S = 30.0


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends sd_notify messages; a no-op when ``NOTIFY_SOCKET`` is absent."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET") or None
        self._address: str | bytes | None = _address(raw) if raw else None
        self.watchdog_interval_s: float | None = _watchdog_interval(env)
        self._sock: trio.socket.SocketType | None = None
        self._lock = trio.Lock()

    @property
    def enabled(self) -> bool:
        return self._address is not None

    async def notify(self, message: str) -> bool:
        """Send one (possibly multi-line) message. Returns False if not sent."""
        if self._address is None:
            return False
        async with self._lock:
            try:
                if self._sock is None:
                    self._sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
                await self._sock.sendto(message.encode(), self._address)
            except OSError as exc:
                log.warning("sd_notify failed", error=str(exc), message=message.split("=")[0])
                return False
        return True

    async def ready(self, status: str | None = None) -> bool:
        msg = "READY=1"
        if status:
            msg += "\nSTATUS=" + _one_line(status)
        return await self.notify(msg)

    async def status(self, text: str) -> bool:
        return await self.notify("STATUS=" + _one_line(text))

    async def stopping(self) -> bool:
        return await self.notify("STOPPING=1")

    async def reloading(self) -> bool:
        # Type=notify-reload wants the monotonic time of the reload's start.
        return await self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    async def watchdog(self) -> bool:
        return await self.notify("WATCHDOG=1")

    async def run_watchdog(
        self,
        status: Callable[[], str] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Ping the watchdog every ``WATCHDOG_USEC / 2`` and refresh ``STATUS``.

        Without a watchdog, only ``STATUS`` is refreshed, every
        ``STATUS_INTERVAL_S``. Returns at once when notify is off.
        """
        task_status.started()
        if not self.enabled:
            return
        watchdog = self.watchdog_interval_s is not None
        interval = self.watchdog_interval_s or STATUS_INTERVAL_S
        if not watchdog and status is None:
            return
        while True:
            if watchdog:
                await self.watchdog()
            if status is not None:
                try:
                    await self.status(status())
                except Exception as exc:  # a status callback bug must not stop pings
                    log.warning("sd_notify status callback failed", error=str(exc))
            await trio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, if it is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2


# What STATUS= says.
#
# What ``STATUS=`` tells systemd (``systemctl --user status``): how many tokens
# are cached, the last refresh, the last error.
#
# Fed by the token cache's events (``TokenCache.add_listener``); the daemon
# (app.py) sends the text through sdnotify.py at start and after a reload, and
# refreshes it periodically (with the watchdog pings, if any).


@dataclass
class StatusLine:
    """The STATUS= text, kept current from the cache's fetch events."""

    cache: Sized
    last_refresh: float | None = None
    last_error: str | None = None
    errors: int = field(default=0)

    def on_event(self, event: str, *, key: Any = None, label: str = "", **fields: Any) -> None:
        if event != "fetch":
            return
        if fields.get("outcome") == "ok":
            self.last_refresh = time.time()
        else:
            self.errors += 1
            # error_summary() text: identifiers and AADSTS descriptions only.
            summary = clip_at_word(str(fields.get("error") or "error"), 200)
            self.last_error = (
                time.strftime("%H:%M:%SZ", time.gmtime())
                + (f" {label}" if label else "")
                + f": {summary}"
            )

    def text(self) -> str:
        n = len(self.cache)
        refresh = (
            time.strftime("%H:%M:%SZ", time.gmtime(self.last_refresh))
            if self.last_refresh
            else "never"
        )
        text = f"{n} token(s) cached; last refresh {refresh}"
        if self.last_error:
            text += f"; last error {self.last_error}"
        return text
