"""What ``STATUS=`` tells systemd (``systemctl --user status``): how many tokens
are cached, the last refresh, the last error.

Fed by the token cache's events (``TokenCache.add_listener``); the daemon
(app.py) sends the text through sdnotify.py at start and after a reload, and
refreshes it periodically (with the watchdog pings, if any).
"""

from __future__ import annotations

import time
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any

from .errors import clip_at_word


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
