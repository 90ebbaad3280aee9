"""Per-key state of the token cache: values, in-flight fetches and status rows.

Split from :mod:`cache` so that the scheduling logic there reads on its own;
nothing here does I/O or looks at a clock.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import trio

from ..core.errors import AgentIdError
from ..core.models import AcquiredToken

Fetch = Callable[[], Awaitable[AcquiredToken]]
EventCallback = Callable[..., None]

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
# A request (not a background refresh) for a key without a servable token
# tries the identity provider again once the last failed request is this old,
# backoff or not (a background retry's failure does not count): recovery is
# seen at once, yet a burst of requests during an outage costs one
# identity-provider call per key per this many seconds.
FOREGROUND_RETRY_S = 2.0
# Claims challenges (one-off fetches with ``challenge=``): per key, at most one
# new challenge is sent per this many seconds; the same one within it gets the
# outcome of the fetch that sent it (cache.py, "Claims challenges").
CHALLENGE_INTERVAL_S = 30.0

State = Literal["pending", "valid", "refreshing", "backoff", "failed", "idle", "expired"]


@dataclass(frozen=True)
class CachedToken:
    token: AcquiredToken
    source: Literal["cache", "identity_provider"]
    expires_at: float  # trio clock
    refresh_at: float  # trio clock
    #: Set when the token is served below the request's ``min_validity_s``
    #: because no fresher one could be had: the error that prevented it.
    stale_error: BaseException | None = field(default=None, compare=False)

    @property
    def stale(self) -> bool:
        return self.stale_error is not None


@dataclass(frozen=True)
class EntryStatus:
    """One key's state for ``status``; never carries a token value."""

    key: Hashable
    description: str
    label: str
    state: State
    expires_at: float | None  # trio clock
    refresh_at: float | None  # trio clock; None when no refresh is planned
    last_requested: float  # trio clock
    last_error: str | None
    consecutive_failures: int
    served_from_cache: int
    served_from_identity_provider: int
    info: Mapping[str, Any] = field(default_factory=dict)
    # The scope the held token was granted (the `scope` of POST /v1/token's
    # answer), None while no token is held.
    granted_scope: str | None = None


class Flight:
    """One running fetch; waiters block on ``done``."""

    __slots__ = ("background", "done", "error", "result", "started_at")

    def __init__(self, started_at: float, background: bool) -> None:
        self.started_at = started_at
        self.background = background
        self.done = trio.Event()
        self.result: CachedToken | None = None
        self.error: BaseException | None = None


@dataclass(frozen=True)
class Challenge:
    """The last claims challenge sent for a key: its value and the fetch that sent it."""

    value: Hashable
    flight: Flight


class Entry:
    __slots__ = (
        "backoff_until",
        "cached",
        "challenge",
        "description",
        "failed_at",
        "failures",
        "fetch",
        "from_cache",
        "from_idp",
        "idle",
        "inflight",
        "info",
        "key",
        "label",
        "last_error",
        "last_requested",
        "own_failures",
        "permanent",
        "request_failed_at",
        "sched_gen",
    )

    def __init__(self, key: Hashable, fetch: Fetch, label: str, now: float) -> None:
        self.key = key
        self.fetch = fetch
        self.label = label
        self.description = describe_key(key)
        self.info: Mapping[str, Any] = {}
        self.cached: CachedToken | None = None
        self.inflight: Flight | None = None
        self.challenge: Challenge | None = None
        self.last_requested = now
        self.last_error: BaseException | None = None
        self.failures = 0  # consecutive failed fetches (status, scheduling)
        self.own_failures = 0  # ... of those, not caused by an input: sizes the backoff
        self.backoff_until = -math.inf
        self.failed_at = -math.inf  # trio clock: when the last fetch failed
        self.request_failed_at = -math.inf  # ... the last fetch a request started
        self.permanent = False
        self.idle = False
        self.sched_gen = 0
        self.from_cache = 0
        self.from_idp = 0


@runtime_checkable
class Describable(Protocol):
    """A cache key that words itself for errors and logs (ResourceKey,
    ManagedIdentityKey): never a token, only what names the key."""

    def describe(self) -> str: ...


def describe_key(key: Hashable) -> str:
    return key.describe() if isinstance(key, Describable) else str(key)


def reraisable(exc: BaseException) -> BaseException:
    """The shared error, its traceback reset: one exception object is raised by
    every waiter and every fail-fast request, and each raise would otherwise
    grow its traceback chain (and pin frames) for as long as the entry lives."""
    return exc.with_traceback(None)


def error_summary(exc: BaseException) -> str:
    """A status-safe one-liner: our errors carry no secrets; others give their type only."""
    if isinstance(exc, AgentIdError):
        return f"{type(exc).__name__}: {exc.description}"
    return type(exc).__name__


class DependencyFailed(Exception):
    """Raised by a fetch whose input token (T1, T2) could not be had.

    Carries the input's own error (what waiters and the API see) and when the
    cache will next try the input (``retry_at``, trio clock). The dependent key
    retries then instead of growing a backoff of its own: otherwise, after an
    outage, a resource key could sit out minutes of backoff it earned only by
    failing fast on T1, while T1 itself had long recovered.
    """

    def __init__(self, error: BaseException, retry_at: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_at = retry_at


def entry_status(entry: Entry, now: float) -> EntryStatus:
    """One key's state for ``status``; never carries a token value."""
    cached = entry.cached
    state: State
    refresh_at: float | None = None
    if entry.inflight is not None:
        state = "refreshing" if cached is not None else "pending"
    elif entry.idle:
        state = "idle"
    elif entry.permanent and entry.last_error is not None:
        state = "failed"
    elif entry.failures:
        state = "backoff"
        refresh_at = entry.backoff_until
    elif cached is None:
        state = "pending"
    elif cached.expires_at <= now:
        state = "expired"
    else:
        state = "valid"
        refresh_at = cached.refresh_at
    return EntryStatus(
        key=entry.key,
        description=entry.description,
        label=entry.label,
        state=state,
        expires_at=cached.expires_at if cached is not None else None,
        refresh_at=refresh_at,
        last_requested=entry.last_requested,
        last_error=error_summary(entry.last_error) if entry.last_error is not None else None,
        consecutive_failures=entry.failures,
        served_from_cache=entry.from_cache,
        served_from_identity_provider=entry.from_idp,
        info=entry.info,
        granted_scope=cached.token.scope if cached is not None else None,
    )
