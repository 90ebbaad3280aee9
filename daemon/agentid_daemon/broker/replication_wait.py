"""Waiting out directory replication for agents this daemon just created.

Entra is eventually consistent: an agent identity (or agent user) created
through Microsoft Graph is unknown to the token endpoint for a while, which
answers as for an unknown application (AADSTS700016) or user (AADSTS50034)
(MicrosoftDocs/entra-docs docs/agent-id/identity-platform/
create-delete-agent-identities.md warns of that delay). For the agents this
daemon created itself (:class:`FreshAgents`), the broker retries those answers
with a doubling pause, within a bounded budget, and says so if it runs out.
"""

from __future__ import annotations

import time

from ..core.errors import IdentityProviderError

#: The directory's "not found" answers that replication lag produces.
NOT_REPLICATED_CODES = frozenset({700016, 50034})
#: How long a token request waits for replication at most, in total.
DEFAULT_REPLICATION_WAIT_S = 30.0
#: How long after its creation an agent is still treated as maybe unreplicated.
FRESH_FOR_S = 600.0
FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 5.0


class FreshAgents:
    """App ids (agent identities) and UPNs / object ids (agent users) created here
    lately, lower-cased, with their creation time (monotonic)."""

    def __init__(self, *, fresh_for_s: float = FRESH_FOR_S) -> None:
        self._created: dict[str, float] = {}
        self._fresh_for_s = fresh_for_s

    def add(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            if key:
                self._created[key.lower()] = now
        self._expire(now)

    def discard(self, *keys: str) -> None:
        for key in keys:
            self._created.pop(key.lower(), None)

    def is_fresh(self, *keys: str | None) -> bool:
        now = time.monotonic()
        self._expire(now)
        return any(k is not None and k.lower() in self._created for k in keys)

    def _expire(self, now: float) -> None:
        old = [k for k, t in self._created.items() if now - t > self._fresh_for_s]
        for key in old:
            del self._created[key]


def next_pause(previous: float | None) -> float:
    """0.5 s, then doubling up to 5 s."""
    return FIRST_PAUSE_S if previous is None else min(MAX_PAUSE_S, previous * 2)


def ran_out_waiting(exc: IdentityProviderError, detail: str, hint: str) -> IdentityProviderError:
    """``exc`` said again once the wait for replication ran out: ``detail`` (how long
    it waited, for what) appended, ``hint`` what to do. A new error, so that a cache
    handing ``exc`` to other callers keeps its own text."""
    return IdentityProviderError(
        f"{exc.description} ({detail})",
        transient=exc.transient,
        aadsts_codes=exc.aadsts_codes,
        correlation_id=exc.correlation_id,
        hint=hint,
        retry_after_s=exc.retry_after_s,
        leg=exc.leg,
        status=exc.status,
    )
