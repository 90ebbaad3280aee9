"""Fault injection for the token endpoint (``/_emulator/faults``).

A fault is any combination of: an HTTP status (429/500/503, with
``Retry-After`` when ``retry_after_s`` is given), a delay before answering,
and an outage (the connection is closed without an answer). ``count`` limits
how many token requests it affects; absent, it lasts until cleared.

One more kind acts at once instead of on later requests: ``{"revoke_token":
"<token>"}`` revokes an issued access token (as a CAE revocation event would;
``/_emulator/tokens/introspect`` then reports it) or refresh token.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

ALLOWED_STATUSES = (429, 500, 503)
MAX_DELAY_S = 300.0


class FaultSpecError(ValueError):
    """The fault body is invalid; the message says which field and why."""


REVOKE_FIELD = "revoke_token"


def parse_revoke(body: dict[str, Any]) -> str:
    """The token of a revoke fault (a body with ``revoke_token`` and nothing else)."""
    if set(body) != {REVOKE_FIELD}:
        raise FaultSpecError(f"{REVOKE_FIELD} is a fault of its own: give no other field")
    token = body[REVOKE_FIELD]
    if not isinstance(token, str) or not token.strip():
        raise FaultSpecError(f"{REVOKE_FIELD} must be a token string")
    return token.strip()


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    retry_after_s: int | None = None
    delay_s: float = 0.0
    outage: bool = False
    count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "retry_after_s": self.retry_after_s,
            "delay_s": self.delay_s,
            "outage": self.outage,
            "count": self.count,
        }


def parse_fault(body: Any) -> Fault:
    """Validate a POST /_emulator/faults body."""
    if not isinstance(body, dict):
        raise FaultSpecError("body must be a JSON object")
    unknown = set(body) - {"status", "retry_after_s", "delay_s", "outage", "count"}
    if unknown:
        raise FaultSpecError(f"unknown field(s): {', '.join(sorted(unknown))}")
    status = body.get("status")
    if status is not None and (isinstance(status, bool) or status not in ALLOWED_STATUSES):
        raise FaultSpecError(f"status must be one of {list(ALLOWED_STATUSES)}")
    retry_after = body.get("retry_after_s")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
    ):
        raise FaultSpecError("retry_after_s must be a non-negative integer")
    delay = body.get("delay_s", 0.0)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not math.isfinite(delay)
        or not 0 <= delay <= MAX_DELAY_S
    ):
        raise FaultSpecError(f"delay_s must be a number between 0 and {MAX_DELAY_S:g}")
    outage = body.get("outage", False)
    if not isinstance(outage, bool):
        raise FaultSpecError("outage must be true or false")
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise FaultSpecError("count must be a positive integer")
    if status is None and not outage and not delay:
        raise FaultSpecError("a fault needs at least one of status, delay_s, outage")
    return Fault(status, retry_after, float(delay), outage, count)


class FaultState:
    """The active fault, shared by the server threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._remaining: int | None = None

    def set(self, fault: Fault) -> None:
        with self._lock:
            self._fault = fault
            self._remaining = fault.count

    def clear(self) -> None:
        with self._lock:
            self._fault = None
            self._remaining = None

    def current(self) -> dict[str, Any] | None:
        with self._lock:
            if self._fault is None:
                return None
            return {**self._fault.to_json(), "remaining": self._remaining}

    def take(self) -> Fault | None:
        """The fault that applies to this token request (consumes one of ``count``)."""
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._fault = None
                    self._remaining = None
            return fault
