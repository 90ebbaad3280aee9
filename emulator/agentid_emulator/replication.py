"""Directory replication lag: what Graph writes, the token endpoint sees later.

Entra is eventually consistent: an application, agent identity or user created
through Microsoft Graph is not at once known to the token endpoint, which
answers for it as for an unknown client (AADSTS700016) or user (AADSTS50034)
until replication catches up (create-delete-agent-identities.md warns that a
new agent identity may take a while before tokens can be requested for it).
``--replication-delay-s`` sets how long; each write is a change applied to the
token service's ``Directory`` once it is due.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from .directory import Directory

Change = Callable[[Directory], None]


class Replication:
    """Pending directory changes, applied in order once due (thread-safe)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._pending: list[tuple[float, int, Change]] = []

    def schedule(self, change: Change, *, now: float | None = None) -> None:
        due = (time.time() if now is None else now) + self.delay_s
        with self._lock:
            heapq.heappush(self._pending, (due, next(self._order), change))

    def apply_due(self, directory: Directory, *, now: float | None = None) -> None:
        """Apply every change due by ``now`` (call before reading the directory)."""
        current = time.time() if now is None else now
        with self._lock:
            while self._pending and self._pending[0][0] <= current:
                _, _, change = heapq.heappop(self._pending)
                change(directory)
