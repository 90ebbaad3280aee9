"""The daemon's recent errors: what failed lately, for ``status --json``.

Status rows show state (the keys that hold a token); a request that failed
and left nothing cached shows up here instead, and in the log. Bounded (the
last :data:`MAX_RECENT_ERRORS` distinct errors); a repeat of the same error
for the same key (a script retrying a bad tenant) updates that record's
count and time instead of pushing others out (the same error: the same error
code and AADSTS codes, whatever ids Entra's description carries). Records carry what the API
answered the client (``AgentIdError.to_json()``: error code, description,
AADSTS codes, correlation id, hint), which never holds a token or secret,
and the key's identifying fields (broker_status.key_fields).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ..core.errors import AgentIdError

MAX_RECENT_ERRORS = 20


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The API's error JSON for our errors; the type name only for anything else."""
    if isinstance(exc, AgentIdError):
        return exc.to_json()
    return {"error": "internal_error", "error_description": type(exc).__name__}


class RecentErrors:
    """The last distinct errors, oldest first inside; :meth:`to_json` lists newest first."""

    def __init__(self, limit: int = MAX_RECENT_ERRORS) -> None:
        self.limit = limit
        self._records: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def record(
        self,
        what: Mapping[str, Any],
        error: Mapping[str, Any],
        *,
        background: bool,
        at: float,
    ) -> None:
        """Remember ``error`` (the API's error JSON) for the key ``what`` describes."""
        ident = repr(sorted(what.items()))
        # Entra's descriptions end with a trace id, correlation id and timestamp of
        # their own: the same error is the same code and AADSTS codes (its latest
        # text is kept); the text only where there is no AADSTS code.
        codes = error.get("aadsts_codes") or []
        detail = repr(sorted(codes)) if codes else str(error.get("error_description"))
        dedupe = (ident, f"{error.get('error')}: {detail}")
        previous = self._records.pop(dedupe, None)
        record: dict[str, Any] = {
            **what,
            **{k: v for k, v in error.items() if v not in (None, [], "")},
            "background": background,
            "at": int(at),
            "first_at": int(at) if previous is None else previous["first_at"],
            "count": 1 if previous is None else previous["count"] + 1,
        }
        self._records[dedupe] = record
        while len(self._records) > self.limit:
            self._records.popitem(last=False)

    def to_json(self) -> list[dict[str, Any]]:
        return [dict(r) for r in reversed(self._records.values())]

    def clear(self) -> None:
        self._records.clear()
