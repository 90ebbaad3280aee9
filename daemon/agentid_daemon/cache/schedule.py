"""When the token cache acts on a key: refresh-ahead, backoff, idle, and the wake-up heap.

The policy is in :mod:`cache`'s docstring; this module holds its arithmetic
(pure functions of an entry's state and the trio clock's ``now``) and the heap
of planned wake-ups that :meth:`cache.TokenCache.run` sleeps on. The
single-flight core (who fetches, who waits, what is cached) stays in
:mod:`cache`.
"""

from __future__ import annotations

import heapq
import math
import random as _random
from collections.abc import Callable
from typing import Literal

import trio

from ..core.errors import AgentIdError, IdentityProviderError
from ..core.models import AcquiredToken
from .entry import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    FOREGROUND_RETRY_S,
    Entry,
    reraisable,
)
from .refresh_rule import REFRESH_FRACTION, refresh_in


def refresh_at(t0: float, token: AcquiredToken, random: _random.Random) -> float:
    """The refresh-ahead time of a token whose fetch started at ``t0`` (refresh_rule.py)."""
    return t0 + refresh_in(token, random.uniform(*REFRESH_FRACTION))


def backoff_delay(failures: int, exc: BaseException | None, random: _random.Random) -> float:
    """Equal-jitter exponential backoff, at least the identity provider's Retry-After."""
    nominal = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(failures - 1, 30))
    delay = nominal / 2 + random.uniform(0, nominal / 2)
    retry_after = exc.retry_after_s if isinstance(exc, IdentityProviderError) else None
    if retry_after is not None and retry_after > delay:
        delay = float(retry_after)
    return delay


def dependency_retry_at(retry_at: float, now: float) -> float:
    """Backoff deadline after an input token's failure: retry when the input is
    retried, never sooner than half the base delay (so a dependency without a
    backoff of its own cannot make us spin)."""
    return max(retry_at, now + BACKOFF_BASE_S / 2)


def rate_limited(exc: BaseException) -> bool:
    """The identity provider asked for the pause: no request may cut it short."""
    return isinstance(exc, IdentityProviderError) and (
        exc.retry_after_s is not None or exc.status == 429
    )


def request_retry_at(entry: Entry) -> float:
    """When a request (not a background refresh) may next fetch the key.

    :data:`FOREGROUND_RETRY_S` after the last fetch a request started failed,
    however long the background backoff: a background retry that failed just
    before the identity provider came back does not make the next request fail
    too. A pause the identity provider asked for (429, ``Retry-After``) is sat
    out in full.
    """
    if entry.last_error is None:
        return -math.inf
    if rate_limited(entry.last_error):
        return entry.backoff_until
    return min(entry.backoff_until, entry.request_failed_at + FOREGROUND_RETRY_S)


def reported(exc: BaseException, entry: Entry, now: float) -> BaseException:
    """The shared error, ready to raise, with the seconds until a request next tries."""
    if isinstance(exc, AgentIdError):
        retry_at = request_retry_at(entry)
        exc.next_attempt_in_s = retry_at - now if retry_at > now else None
    return reraisable(exc)


def next_wakeup(entry: Entry, idle_timeout_s: float) -> float:
    """When the scheduler should next look at an entry with no fetch running."""
    idle_at = entry.last_requested + idle_timeout_s
    if entry.idle:
        return entry.cached.expires_at if entry.cached is not None else -math.inf
    if entry.permanent or (entry.failures == 0 and entry.cached is None):
        return idle_at
    if entry.failures:
        return min(entry.backoff_until, idle_at)
    assert entry.cached is not None
    return min(entry.cached.refresh_at, idle_at)


def due_action(entry: Entry, now: float, idle_timeout_s: float) -> Literal["idle", "fetch", "wait"]:
    """What a wake-up at ``now`` does for an entry with no fetch running: it went
    idle, its background fetch is due, or it waits for its next wake-up."""
    # Same expression as in next_wakeup, so a wake-up at idle_at is idle (no float drift).
    if now >= entry.last_requested + idle_timeout_s:
        return "idle"
    if entry.permanent:
        return "wait"
    if entry.failures:
        due = entry.backoff_until
    elif entry.cached is not None:
        due = entry.cached.refresh_at
    else:
        due = math.inf
    return "fetch" if due <= now else "wait"


class WakeupHeap:
    """Planned wake-ups ``(due, seq, generation, entry)`` on the trio clock.

    A wake-up whose generation is no longer its entry's ``sched_gen`` was
    superseded (by a newer plan, a fetch, or eviction) and is skipped.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Entry]] = []
        self._seq = 0
        self._wakeup = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, entry: Entry, due: float, *, live: Callable[[Entry], bool], count: int) -> None:
        """Plan ``entry``'s wake-up at ``due``; ``live`` tells a cached entry (of
        ``count``) from an evicted one, for compaction."""
        if len(self._heap) > 4 * count + 64:
            # Superseded wake-ups pile up; drop them so the heap stays O(entries).
            self._heap = [
                item for item in self._heap if item[2] == item[3].sched_gen and live(item[3])
            ]
            heapq.heapify(self._heap)
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry.sched_gen, entry))
        if self._heap[0][1] == self._seq:
            self._wakeup.set()  # new earliest deadline

    async def run(
        self, *, live: Callable[[Entry], bool], on_due: Callable[[Entry, float], None]
    ) -> None:
        """Call ``on_due(entry, now)`` for each current wake-up as it falls due; forever."""
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, gen, entry = heapq.heappop(self._heap)
                if gen == entry.sched_gen and live(entry):
                    on_due(entry, now)
            self._wakeup = trio.Event()
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
