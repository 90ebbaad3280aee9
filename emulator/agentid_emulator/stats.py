"""Token request counters for ``GET /_emulator/stats`` (and Graph requests)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

# The five agent legs, the blueprint's own app-only token, and managed identity
# tokens from the IMDS endpoint (--imds-port).
LEGS = (
    "t1",
    "autonomous_app",
    "obo",
    "t2",
    "user_fic",
    "blueprint_app",
    "managed_identity",
    "obo_refresh",
)


class Stats:
    """Counts every token endpoint request: by leg (when it can be classified),
    by client_id, and the ones that did not end in a 200 (``errors``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._errors = 0
            self._by_leg: Counter[str] = Counter({leg: 0 for leg in LEGS})
            self._by_client: Counter[str] = Counter()
            self._graph_total = 0
            self._graph_errors = 0

    def record_graph(self, *, ok: bool) -> None:
        """One request to the emulator's Microsoft Graph (``graph_requests``)."""
        with self._lock:
            self._graph_total += 1
            if not ok:
                self._graph_errors += 1

    def record(self, *, leg: str | None, client_id: str | None, ok: bool) -> None:
        with self._lock:
            self._total += 1
            if leg in LEGS:
                self._by_leg[leg] += 1
            if client_id:
                self._by_client[client_id] += 1
            if not ok:
                self._errors += 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "token_requests": {
                    "total": self._total,
                    "by_leg": {leg: self._by_leg[leg] for leg in LEGS},
                    "by_client": dict(self._by_client),
                    "errors": self._errors,
                },
                "graph_requests": {"total": self._graph_total, "errors": self._graph_errors},
            }
