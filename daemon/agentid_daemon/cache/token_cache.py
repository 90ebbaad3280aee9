"""In-memory token cache: single-flight, refresh-ahead, backoff, idle expiry, bounds.

Every time here is on the trio clock (``trio.current_time()``), so tests drive
it with ``autojump_clock``; wall-clock conversion happens at the API edge
(core/clock.py).

Policy (docs/design.md, "Cache semantics"), decided here:

* **Single-flight.** At most one fetch per key runs at a time, as a task in the
  nursery owned by :meth:`TokenCache.run`. Requests join it and get its result
  or its error; a cancelled request stops waiting but never cancels the fetch.
* **Freshness.** A cached token is served while it has more than
  ``min_validity_s`` left. ``force_refresh`` only accepts a fetch that started
  at or after the request arrived: it joins such a fetch if one is running,
  otherwise waits for the older one to end and starts its own (so concurrent
  force-refreshes share one fetch, but none is answered with an older token).
  A fetched token is returned even if its lifetime is below ``min_validity_s``:
  nothing fresher can be had.
* **Refresh-ahead.** After a successful fetch started at ``t0`` with lifetime
  ``L``, the next refresh is at ``t0 + U(2/3, 3/4) * L``, or ``t0 + refresh_in``
  when the identity provider's hint is sooner. The old token keeps being
  served until it no longer satisfies a request.
* **Backoff.** The n-th consecutive failure waits ``d = min(300, 2**(n-1))``
  seconds with *equal jitter* (uniform in ``[d/2, d]``: spread, yet never
  retrying sooner than half the nominal delay), and never less than the
  identity provider's ``retry_after_s``. Until that deadline no background
  fetch starts for the key. A request that a cached token satisfies gets it;
  any other request tries the identity provider again once the key's last
  failed *request* is ``FOREGROUND_RETRY_S`` (2 s) old (a failed background
  retry does not hold requests back), so a recovery is seen by the
  next request instead of at the end of a backoff of up to 5 minutes, while a
  burst of requests during an outage still makes one call per key per 2 s
  (they join one fetch, or fail fast with the last error, which carries the
  seconds until a request next tries: ``next_attempt_in_s``). The requests a
  background fetch makes for its inputs (T1 for a resource token) are
  background work: they keep backing off. An explicit ``force_refresh``
  tries once at once. A pause the identity provider asked for (429 or
  ``Retry-After``) is always honoured, by requests and ``force_refresh`` too.
  Transient failures are retried in the background at the deadline;
  permanent ones (``IdentityProviderError.transient`` false, or any other
  error) stop background refresh until the next request after the deadline,
  which tries again. A failure never drops a still-valid token.
* **Stale.** With ``allow_stale`` (the resource tokens the API serves), a
  request that no fresh token can satisfy (the fetch failed, or the key backs
  off) gets the cached token as long as it is still valid, even below
  ``min_validity_s``, marked with the error (``CachedToken.stale_error``):
  during an outage a token with 4 minutes left beats none. Never for
  ``force_refresh``, which asks for proof that a fetch works now.
* **One-off fetches.** ``fetch_once`` (a claims challenge, the start of an OBO
  session) is a fetch with inputs the stored one lacks: it never answers from
  the cache, never joins a plain fetch (it waits for a running one, then runs
  its own), and its token replaces the cached one. The stored fetch stays what
  refreshes call. The start of a session is not held back by a backoff (its
  user token is new).
* **Claims challenges.** A one-off fetch given with ``challenge`` (the claims
  value) is bounded per key, since any caller can make up claims (through
  the managed identity endpoint, any holder of a session header): while the
  key backs off (a failure, 429 or ``Retry-After``) it fails fast with the
  last error like any other request; the same challenge while its fetch runs,
  or within ``challenge_interval_s`` after that fetch started, gets that
  fetch's outcome (its token, or its error); a different challenge within that
  interval fails fast with a transient error whose ``retry_after_s`` is the
  rest of the interval. So a genuine challenge reaches the identity provider
  at once, and a flood of them costs one request per key and interval.
* **Idle.** A key not requested for ``idle_timeout_s`` is not refreshed any
  more; it is evicted once its token has expired (or at once if it has none).
* **Bounded.** Beyond ``max_entries`` the least recently requested key goes.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import random as _random
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import trio

from agentid_client.contract import DEFAULT_MIN_VALIDITY_S

from ..core.errors import AgentIdError, IdentityProviderError
from ..core.models import AcquiredToken
from .entry import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CHALLENGE_INTERVAL_S,
    FOREGROUND_RETRY_S,
    CachedToken,
    Challenge,
    DependencyFailed,
    Entry,
    EntryStatus,
    EventCallback,
    Fetch,
    Flight,
    State,
    entry_status,
    error_summary,
    reraisable,
)
from .refresh_rule import REFRESH_FRACTION
from .schedule import (
    WakeupHeap,
    backoff_delay,
    dependency_retry_at,
    due_action,
    next_wakeup,
    rate_limited,
    refresh_at,
    reported,
    request_retry_at,
)

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "CHALLENGE_INTERVAL_S",
    "FOREGROUND_RETRY_S",
    "REFRESH_FRACTION",
    "CachedToken",
    "DependencyFailed",
    "EntryStatus",
    "Fetch",
    "State",
    "TokenCache",
    "error_summary",
]

# True inside a background refresh's task (and what it awaits): the requests a
# fetch makes for its inputs are background work then, and keep backing off.
_IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agentid_cache_in_background", default=False
)


class TokenCache:
    """Tokens by key; see the module docstring for the policy."""

    def __init__(
        self,
        *,
        idle_timeout_s: float = 3600,
        max_entries: int = 10_000,
        random: _random.Random | None = None,
        on_event: EventCallback | None = None,
        challenge_interval_s: float = CHALLENGE_INTERVAL_S,
    ) -> None:
        if idle_timeout_s <= 0 or max_entries < 1 or not challenge_interval_s >= 0:
            raise ValueError(
                "idle_timeout_s must be > 0, max_entries >= 1 and challenge_interval_s >= 0"
            )
        self.idle_timeout_s = float(idle_timeout_s)
        self.challenge_interval_s = float(challenge_interval_s)
        self.max_entries = max_entries
        self._random = random or _random.Random()
        self._listeners: list[EventCallback] = [on_event] if on_event else []
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()  # LRU order by request
        self._wakeups = WakeupHeap()
        self._nursery: trio.Nursery | None = None

    # -- public API --------------------------------------------------------------

    def add_listener(self, callback: EventCallback) -> None:
        """Also call ``callback(event, key=, label=, **fields)`` on cache events."""
        self._listeners.append(callback)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def scheduled_wakeups(self) -> int:
        """Refresh and expiry wake-ups queued (stale ones are pruned: bounded)."""
        return len(self._wakeups)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the fetch and refresh tasks; :meth:`get` needs this running."""
        if self._nursery is not None:
            raise RuntimeError("TokenCache.run() is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._wakeups.run(live=self._live, on_due=self._due)
        finally:
            self._nursery = None

    async def get(
        self,
        key: Hashable,
        fetch: Fetch,
        *,
        min_validity_s: float = DEFAULT_MIN_VALIDITY_S,
        force_refresh: bool = False,
        label: str = "",
        info: Mapping[str, Any] | None = None,
        fetch_once: Fetch | None = None,
        allow_stale: bool = False,
        challenge: Hashable | None = None,
    ) -> CachedToken:
        """Return a token for ``key`` satisfying the request, fetching it if needed.

        ``fetch`` replaces the entry's stored fetch (it is what background
        refreshes call); ``info`` is opaque metadata echoed in :meth:`snapshot`;
        ``fetch_once``, ``allow_stale`` and ``challenge`` (what makes it a claims
        challenge: the claims) see the module docstring.
        """
        if self._nursery is None:
            raise RuntimeError("TokenCache.run() is not running")
        if not min_validity_s >= 0:  # also rejects NaN
            raise ValueError("min_validity_s must be >= 0")
        asked_at = trio.current_time()
        entry = self._touch(key, fetch, label, info, asked_at)
        if fetch_once is not None:
            if challenge is not None:
                return await self._get_challenged(entry, fetch_once, challenge)
            return await self._get_once(entry, fetch_once)
        # A fetch's own inputs (T1 for a resource token) are asked for from
        # within that fetch: they are background work when it is.
        background = _IN_BACKGROUND.get()
        counted_miss = False
        forced = False  # an explicit force_refresh skips a backoff once, not in a loop
        while True:
            now = trio.current_time()
            cached = entry.cached
            if (
                not force_refresh
                and cached is not None
                and cached.expires_at - now > min_validity_s
            ):
                entry.from_cache += 1
                self._emit("hit", entry)
                return dataclasses.replace(cached, source="cache")
            if not counted_miss:
                counted_miss = True
                self._emit("miss", entry)
            flight = entry.inflight
            if flight is None:
                if (
                    now < entry.backoff_until
                    and entry.last_error is not None
                    and not (force_refresh and not forced and not rate_limited(entry.last_error))
                    and (background or now < request_retry_at(entry))
                ):
                    stale = self._stale(entry, entry.last_error, allow_stale and not force_refresh)
                    if stale is not None:
                        return stale
                    raise reported(entry.last_error, entry, now)
                forced = force_refresh
                flight = self._start(entry, background=background)
            elif force_refresh and flight.started_at < asked_at:
                # That fetch may answer with a token minted before we asked.
                await flight.done.wait()
                continue
            await flight.done.wait()
            if flight.error is not None:
                stale = self._stale(entry, flight.error, allow_stale and not force_refresh)
                if stale is not None:
                    return stale
                raise reported(flight.error, entry, trio.current_time())
            assert flight.result is not None
            entry.from_idp += 1
            return flight.result

    def _stale(self, entry: Entry, error: BaseException, allowed: bool) -> CachedToken | None:
        """The cached token, still valid though below the request's min_validity_s,
        when no fresher one could be had; None when not allowed or none is valid."""
        cached = entry.cached
        if not allowed or cached is None or cached.expires_at <= trio.current_time():
            return None
        entry.from_cache += 1
        self._emit("stale", entry, error=error_summary(error))
        return dataclasses.replace(cached, source="cache", stale_error=reraisable(error))

    async def _get_once(self, entry: Entry, fetch_once: Fetch) -> CachedToken:
        self._emit("miss", entry)
        while entry.inflight is not None:
            await entry.inflight.done.wait()
        flight = self._start(entry, background=False, fetch=fetch_once)
        await flight.done.wait()
        if flight.error is not None:
            raise reraisable(flight.error)
        assert flight.result is not None
        entry.from_idp += 1
        return flight.result

    async def _get_challenged(
        self, entry: Entry, fetch_once: Fetch, challenge: Hashable
    ) -> CachedToken:
        self._emit("miss", entry)
        while True:
            now = trio.current_time()
            if now < entry.backoff_until and entry.last_error is not None:
                raise reported(entry.last_error, entry, now)
            last = entry.challenge
            if last is not None and now < last.flight.started_at + self.challenge_interval_s:
                if last.value != challenge:
                    raise self._challenge_refused(last, now)
                joined = not last.flight.done.is_set()  # else: answered from its outcome
                await last.flight.done.wait()
                if last.flight.error is not None:
                    raise reported(last.flight.error, entry, trio.current_time())
                assert last.flight.result is not None
                if joined:
                    entry.from_idp += 1
                    return last.flight.result
                entry.from_cache += 1
                return dataclasses.replace(last.flight.result, source="cache")
            if entry.inflight is None:
                break
            await entry.inflight.done.wait()  # then look again: it may have failed
        flight = self._start(entry, background=False, fetch=fetch_once)
        entry.challenge = Challenge(challenge, flight)
        await flight.done.wait()
        if flight.error is not None:
            raise reraisable(flight.error)
        assert flight.result is not None
        entry.from_idp += 1
        return flight.result

    def _challenge_refused(self, last: Challenge, now: float) -> IdentityProviderError:
        """A different challenge too soon after the last one: not sent (see the policy)."""
        wait = last.flight.started_at + self.challenge_interval_s - now
        exc = IdentityProviderError(
            f"another claims challenge for this token was sent {now - last.flight.started_at:.0f}"
            f" s ago; the daemon sends at most one new challenge per token every "
            f"{self.challenge_interval_s:g} s",
            transient=True,
            retry_after_s=wait,
            hint="retry after Retry-After seconds with the resource's latest challenge",
        )
        exc.next_attempt_in_s = wait
        return exc

    def invalidate(self, key: Hashable, *, if_token: AcquiredToken | None = None) -> bool:
        """Drop ``key``; with ``if_token``, only while that very token is the cached one.

        A fetch already running for the key still completes for its waiters,
        but its result is not cached.
        """
        entry = self._entries.get(key)
        if entry is None:
            return False
        if if_token is not None and (entry.cached is None or entry.cached.token is not if_token):
            return False
        self._remove(entry, "invalidated")
        return True

    def flush(self, predicate: Callable[[Hashable], bool] | None = None) -> int:
        """Drop every key (or those matching ``predicate``); return how many."""
        victims = [e for k, e in self._entries.items() if predicate is None or predicate(k)]
        for entry in victims:
            self._remove(entry, "flushed")
        return len(victims)

    def snapshot(self) -> list[EntryStatus]:
        now = trio.current_time()
        return [entry_status(entry, now) for entry in self._entries.values()]

    # -- request side ------------------------------------------------------------

    def _touch(
        self,
        key: Hashable,
        fetch: Fetch,
        label: str,
        info: Mapping[str, Any] | None,
        now: float,
    ) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = Entry(key, fetch, label, now)
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                oldest = next(iter(self._entries.values()))
                self._remove(oldest, "capacity")
        else:
            self._entries.move_to_end(key)
            entry.fetch = fetch
            if label:
                entry.label = label
        if info is not None:
            entry.info = dict(info)
        entry.last_requested = now
        resume = entry.idle
        entry.idle = False
        if entry.permanent and now >= entry.backoff_until:
            # "Until the next request": this one re-enables refreshing.
            entry.permanent = False
            resume = True
        if resume and entry.inflight is None:
            self._reschedule(entry)
        return entry

    # -- fetching ----------------------------------------------------------------

    def _start(self, entry: Entry, *, background: bool, fetch: Fetch | None = None) -> Flight:
        assert self._nursery is not None
        flight = Flight(trio.current_time(), background)
        entry.inflight = flight
        entry.sched_gen += 1  # any pending schedule is superseded by this fetch
        self._nursery.start_soon(
            self._fly, entry, flight, fetch or entry.fetch, name=f"fetch {entry.label}"
        )
        return flight

    async def _fly(self, entry: Entry, flight: Flight, fetch: Fetch) -> None:
        _IN_BACKGROUND.set(flight.background)  # this task's own context (trio copies it)
        try:
            token = await fetch()
        except trio.Cancelled:
            flight.error = AgentIdError("the token cache is shutting down")
            raise
        except DependencyFailed as dep:  # an input token failed: report its error
            flight.error = dep.error
            self._failed(entry, flight, dep.error, retry_at=dep.retry_at)
        except Exception as exc:  # any failure is reported to every waiter
            flight.error = exc
            self._failed(entry, flight, exc)
        else:
            flight.result = self._succeeded(entry, flight, token)
        finally:
            if flight.error is None and flight.result is None:  # KeyboardInterrupt & co.
                flight.error = AgentIdError("the token fetch was interrupted")
            if entry.inflight is flight:
                entry.inflight = None
            flight.done.set()
            if self._entries.get(entry.key) is entry:
                self._reschedule(entry)

    def _succeeded(self, entry: Entry, flight: Flight, token: AcquiredToken) -> CachedToken:
        t0 = flight.started_at
        lifetime = max(0.0, float(token.expires_in))
        cached = CachedToken(
            token, "identity_provider", t0 + lifetime, refresh_at(t0, token, self._random)
        )
        entry.cached = cached
        entry.failures = 0
        entry.own_failures = 0
        entry.last_error = None
        entry.backoff_until = -math.inf
        entry.permanent = False
        self._emit("fetch", entry, outcome="ok", background=flight.background)
        return cached

    def _failed(
        self, entry: Entry, flight: Flight, exc: BaseException, *, retry_at: float | None = None
    ) -> None:
        now = trio.current_time()
        entry.last_error = exc
        entry.failed_at = now
        if not flight.background:
            entry.request_failed_at = now
        entry.failures += 1
        if retry_at is None:
            entry.own_failures += 1
            entry.backoff_until = now + self.backoff_delay(entry.own_failures, exc)
        else:
            # The input's failure, not ours: retry when the input is retried.
            entry.backoff_until = dependency_retry_at(retry_at, now)
        entry.permanent = not (isinstance(exc, IdentityProviderError) and exc.transient)
        self._emit(
            "fetch", entry, outcome="error", background=flight.background, error=error_summary(exc)
        )

    def retry_at(self, key: Hashable) -> float:
        """When ``key`` may next be fetched (trio clock); -inf when it is not backing off."""
        entry = self._entries.get(key)
        return entry.backoff_until if entry is not None else -math.inf

    def backoff_delay(self, failures: int, exc: BaseException | None = None) -> float:
        """Equal-jitter exponential backoff, at least the identity provider's Retry-After."""
        return backoff_delay(failures, exc, self._random)

    # -- background scheduling ---------------------------------------------------

    def _reschedule(self, entry: Entry) -> None:
        """Plan the entry's next wake-up from its state (or none)."""
        entry.sched_gen += 1
        if entry.inflight is not None:
            return  # the fetch's completion reschedules
        due = next_wakeup(entry, self.idle_timeout_s)
        self._wakeups.push(entry, due, live=self._live, count=len(self._entries))

    def _live(self, entry: Entry) -> bool:
        """Still the cached entry for its key (not evicted nor replaced)."""
        return self._entries.get(entry.key) is entry

    def _due(self, entry: Entry, now: float) -> None:
        if entry.inflight is not None:
            return
        action = due_action(entry, now, self.idle_timeout_s)
        if action == "fetch":
            self._start(entry, background=True)
            return
        if action == "idle":
            if not entry.idle:
                entry.idle = True
                self._emit("idle", entry)
            if entry.cached is None or entry.cached.expires_at <= now:
                self._remove(entry, "idle")
                return
        self._reschedule(entry)

    # -- bookkeeping -------------------------------------------------------------

    def _remove(self, entry: Entry, reason: str) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        entry.sched_gen += 1
        self._emit("evict", entry, reason=reason)

    def _emit(self, event: str, entry: Entry, **fields: Any) -> None:
        for listener in self._listeners:
            # A metrics bug must never break token serving.
            with contextlib.suppress(Exception):
                listener(event, key=entry.key, label=entry.label, **fields)
