"""TokenCache: single-flight, freshness, refresh-ahead, backoff, idle, bounds (virtual time)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from agentid_daemon.cache.token_cache import BACKOFF_CAP_S, TokenCache
from agentid_daemon.core.errors import AgentIdError, IdentityProviderError
from agentid_daemon.core.models import AcquiredToken

# With autojump_clock a deadlock jumps straight to this (virtual) deadline.
GUARD_S = 10**7


class FakeSource:
    """A programmable fetch: counts calls, optional delay, optional error."""

    def __init__(
        self, lifetime: float = 3600, refresh_in: float | None = None, name: str = "tok"
    ) -> None:
        self.lifetime = lifetime
        self.refresh_in = refresh_in
        self.name = name
        self.calls: list[float] = []
        self.delay = 0.0
        self.error: BaseException | None = None

    async def __call__(self) -> AcquiredToken:
        self.calls.append(trio.current_time())
        n = len(self.calls)
        if self.delay:
            await trio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return AcquiredToken(
            f"{self.name}-secret-{n}", expires_in=self.lifetime, refresh_in=self.refresh_in
        )

    @property
    def count(self) -> int:
        return len(self.calls)


@asynccontextmanager
async def running(seed: int = 1, **kwargs: Any) -> AsyncIterator[TokenCache]:
    cache = TokenCache(random=random.Random(seed), **kwargs)
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            yield cache
            nursery.cancel_scope.cancel()


def transient(retry_after: float | None = None) -> IdentityProviderError:
    return IdentityProviderError(
        "Entra unavailable (503)", transient=True, retry_after_s=retry_after, leg="t1", status=503
    )


def permanent() -> IdentityProviderError:
    return IdentityProviderError(
        "AADSTS7000215: invalid client secret",
        transient=False,
        aadsts_codes=(7000215,),
        leg="t1",
        status=401,
    )


async def test_get_needs_run() -> None:
    cache = TokenCache()
    with pytest.raises(RuntimeError):
        await cache.get("k", FakeSource())


async def test_single_flight_200_concurrent(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    src.delay = 2.0
    results: list[str] = []
    async with running() as cache:

        async def one() -> None:
            results.append((await cache.get("k", src)).token.access_token)

        async with trio.open_nursery() as n:
            for _ in range(200):
                n.start_soon(one)
    assert src.count == 1
    assert len(results) == 200
    assert set(results) == {"tok-secret-1"}


async def test_hit_and_sources(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    async with running() as cache:
        first = await cache.get("k", src)
        second = await cache.get("k", src)
    assert first.source == "identity_provider"
    assert second.source == "cache"
    assert first.token is second.token
    assert src.count == 1


async def test_errors_reach_every_waiter(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    src.delay, src.error = 1.0, permanent()
    errors: list[BaseException] = []
    async with running() as cache:

        async def one() -> None:
            try:
                await cache.get("k", src)
            except IdentityProviderError as exc:
                errors.append(exc)

        async with trio.open_nursery() as n:
            for _ in range(10):
                n.start_soon(one)
    assert src.count == 1
    assert len(errors) == 10


async def test_cancelled_waiter_does_not_cancel_fetch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.delay = 10.0
    got: list[str] = []
    async with running() as cache:

        async def patient() -> None:
            got.append((await cache.get("k", src)).token.access_token)

        async with trio.open_nursery() as n:
            n.start_soon(patient)
            with trio.move_on_after(1):  # gives up long before the fetch ends
                await cache.get("k", src)
            n.start_soon(patient)
    assert src.count == 1
    assert got == ["tok-secret-1", "tok-secret-1"]


async def test_min_validity(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=1000, refresh_in=10_000)  # refresh-ahead out of the way
    async with running(idle_timeout_s=100_000) as cache:
        await cache.get("k", src)
        await trio.sleep(600)  # 400 s left
        assert (await cache.get("k", src, min_validity_s=300)).source == "cache"
        fresh = await cache.get("k", src, min_validity_s=500)
        assert fresh.source == "identity_provider"
        assert src.count == 2
        assert fresh.token.access_token == "tok-secret-2"
        assert fresh.expires_at == pytest.approx(trio.current_time() + 1000)
        with pytest.raises(ValueError):
            await cache.get("k", src, min_validity_s=-1)


async def test_short_lived_token_is_returned_not_looped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource(lifetime=60)  # less than min_validity_s: nothing better exists
    async with running() as cache:
        assert (await cache.get("k", src)).source == "identity_provider"
        assert (await cache.get("k", src)).source == "identity_provider"
    assert src.count == 2


async def test_force_refresh(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    async with running() as cache:
        await cache.get("k", src)
        forced = await cache.get("k", src, force_refresh=True)
        assert forced.source == "identity_provider"
        assert src.count == 2

        # Concurrent force-refreshes arriving together share one fetch.
        src.delay = 5.0
        tokens: list[str] = []

        async def force() -> None:
            tokens.append((await cache.get("k", src, force_refresh=True)).token.access_token)

        async with trio.open_nursery() as n:
            for _ in range(20):
                n.start_soon(force)
        assert src.count == 3
        assert set(tokens) == {"tok-secret-3"}

        # A force-refresh arriving while an older fetch runs does not take its token.
        async with trio.open_nursery() as n:
            n.start_soon(force)
            await trio.sleep(1)
            n.start_soon(force)
        assert src.count == 5
        assert tokens[-2:] == ["tok-secret-4", "tok-secret-5"]


async def test_refresh_ahead_window_across_seeds(autojump_clock: trio.testing.MockClock) -> None:
    lifetime = 3600.0
    sources = [FakeSource(lifetime) for _ in range(60)]
    async with running(seed=7, idle_timeout_s=10 * lifetime) as cache:
        t0 = trio.current_time()
        for i, src in enumerate(sources):
            await cache.get(i, src)
        planned = [s.refresh_at - t0 for s in cache.snapshot()]
        assert all(2 / 3 * lifetime <= p <= 3 / 4 * lifetime for p in planned)
        assert len({round(p, 3) for p in planned}) > 50  # jittered, not one instant
        await trio.sleep(2 / 3 * lifetime - 1)
        assert all(s.count == 1 for s in sources)
        await trio.sleep(lifetime / 12 + 2)
        assert all(s.count == 2 for s in sources)
        for src in sources:
            assert 2 / 3 * lifetime <= src.calls[1] - src.calls[0] <= 3 / 4 * lifetime
    for seed in range(30):  # and for any seed
        async with running(seed=seed) as cache:
            t0 = trio.current_time()
            await cache.get("k", FakeSource(lifetime))
            refresh_at = cache.snapshot()[0].refresh_at
            assert refresh_at is not None
            assert 2 / 3 * lifetime <= refresh_at - t0 <= 3 / 4 * lifetime


async def test_refresh_in_is_honoured_when_sooner(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=3600, refresh_in=100)
    async with running() as cache:
        await cache.get("k", src)
        await trio.sleep(99)
        assert src.count == 1
        await trio.sleep(2)
        assert src.count == 2
        assert src.calls[1] - src.calls[0] == pytest.approx(100)


async def test_old_token_served_during_slow_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource(lifetime=3600, refresh_in=100)
    async with running() as cache:
        await cache.get("k", src)
        src.delay = 60.0
        await trio.sleep(110)  # refresh started at 100, ends at 160
        assert src.count == 2
        during = await cache.get("k", src)
        assert during.source == "cache"
        assert during.token.access_token == "tok-secret-1"
        assert cache.snapshot()[0].state == "refreshing"
        await trio.sleep(60)
        after = await cache.get("k", src)
        assert after.token.access_token == "tok-secret-2"


async def test_backoff_doubles_with_jitter_and_cap(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=10**6, refresh_in=10)
    async with running(idle_timeout_s=10**7) as cache:
        await cache.get("k", src)
        src.error = transient()
        await trio.sleep(10 + 5000)
        # The valid token is still served while refreshes fail.
        assert (await cache.get("k", src)).token.access_token == "tok-secret-1"
        assert cache.snapshot()[0].state == "backoff"
    gaps = [b - a for a, b in zip(src.calls[1:], src.calls[2:], strict=False)]
    assert len(gaps) >= 12
    for n, gap in enumerate(gaps, start=1):
        nominal = min(BACKOFF_CAP_S, 2.0 ** (n - 1))
        assert nominal / 2 <= gap <= nominal + 1e-6, (n, gap)
    assert max(gaps) <= BACKOFF_CAP_S + 1e-6
    assert len({round(g, 6) for g in gaps}) == len(gaps)  # jittered


async def test_retry_after_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=120)
    src.error = transient(retry_after=60)
    async with running() as cache:
        with pytest.raises(IdentityProviderError):
            await cache.get("k", src)
        assert src.count == 1
        # No valid token and inside the window: fail fast, no new fetch.
        await trio.sleep(30)
        with pytest.raises(IdentityProviderError) as info:
            await cache.get("k", src)
        assert info.value.retry_after_s == 60
        assert src.count == 1
        await trio.sleep(29)
        assert src.count == 1
        src.error = None
        await trio.sleep(2)  # the background retry at the deadline
        assert src.count == 2
        assert src.calls[1] - src.calls[0] >= 60
        assert (await cache.get("k", src, min_validity_s=0)).token.access_token == "tok-secret-2"


async def test_permanent_error_stops_refreshing(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=3600, refresh_in=100)
    async with running(idle_timeout_s=10**6) as cache:
        await cache.get("k", src)
        src.error = permanent()
        await trio.sleep(101)
        assert src.count == 2
        await trio.sleep(3000)
        assert src.count == 2  # no background retries
        status = cache.snapshot()[0]
        assert status.state == "failed"
        assert "7000215" in (status.last_error or "")
        # The next request still gets the valid token, and re-arms one retry.
        assert (await cache.get("k", src)).token.access_token == "tok-secret-1"
        await trio.sleep(1)
        assert src.count == 3
        await trio.sleep(300)
        assert src.count == 3


async def test_idle_keys_stop_refreshing_and_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource(lifetime=300)
    async with running(idle_timeout_s=1000) as cache:
        await cache.get("k", src)
        await trio.sleep(1000)
        count_at_idle = src.count
        assert 4 <= count_at_idle <= 6  # refreshed every ~200-225 s while wanted
        await trio.sleep(5000)
        assert src.count == count_at_idle
        assert len(cache) == 0  # evicted once its token expired
        assert (await cache.get("k", src)).source == "identity_provider"


async def test_idle_key_resumes_when_asked_again(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=3000, refresh_in=2500)
    async with running(idle_timeout_s=1000) as cache:
        await cache.get("k", src)
        await trio.sleep(1500)
        assert cache.snapshot()[0].state == "idle"
        assert src.count == 1
        assert (await cache.get("k", src)).source == "cache"
        await trio.sleep(1001)  # refresh_at (2500) passed while wanted again
        assert src.count == 2


async def test_bounded_evicts_least_recently_requested(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    async with running(max_entries=3) as cache:
        for key in ("a", "b", "c"):
            await cache.get(key, src)
        await cache.get("a", src)  # b is now the least recently requested
        await cache.get("d", src)
        assert sorted(s.key for s in cache.snapshot()) == ["a", "c", "d"]
        assert len(cache) == 3


async def test_invalidate_and_flush(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    async with running() as cache:
        first = await cache.get("a", src)
        assert not cache.invalidate("a", if_token=AcquiredToken("other", 1))
        assert cache.invalidate("a", if_token=first.token)
        assert not cache.invalidate("a")
        assert (await cache.get("a", src)).token.access_token == "tok-secret-2"
        await cache.get("b", src)
        await cache.get(("x", 1), src)
        assert cache.flush(lambda k: isinstance(k, tuple)) == 1
        assert cache.flush() == 2
        assert len(cache) == 0


async def test_invalidate_during_fetch_is_not_cached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.delay = 5
    async with running() as cache:
        async with trio.open_nursery() as n:
            n.start_soon(cache.get, "k", src)
            await trio.sleep(1)
            assert cache.invalidate("k")
        assert len(cache) == 0
        src.delay = 0
        assert (await cache.get("k", src)).token.access_token == "tok-secret-2"


async def test_snapshot_and_events_never_carry_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    src = FakeSource(refresh_in=10)
    async with running(on_event=lambda e, **f: events.append((e, f))) as cache:
        await cache.get("k", src, label="t1", info={"profile": "p"})
        await cache.get("k", src, label="t1")
        src.error = AgentIdError("secret-free description")
        await trio.sleep(11)
        snap = cache.snapshot()
    assert "tok-secret" not in repr(snap) + repr(events)
    assert snap[0].info == {"profile": "p"}
    assert snap[0].label == "t1"
    assert snap[0].served_from_cache == 1
    assert snap[0].served_from_identity_provider == 1
    names = [e for e, _ in events]
    assert names[:3] == ["miss", "fetch", "hit"]
    failed = {
        "key": "k",
        "label": "t1",
        "outcome": "error",
        "background": True,
        "error": "AgentIdError: secret-free description",
    }
    assert ("fetch", failed) in events


async def test_foreign_error_text_is_not_exposed(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    src.error = RuntimeError("contains tok-secret-xyz")
    async with running() as cache:
        with pytest.raises(RuntimeError):
            await cache.get("k", src)
        assert cache.snapshot()[0].last_error == "RuntimeError"


async def test_broken_listener_does_not_break_serving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def boom(event: str, **fields: Any) -> None:
        raise ValueError("listener bug")

    async with running(on_event=boom) as cache:
        assert (await cache.get("k", FakeSource())).source == "identity_provider"


async def test_sole_waiter_cancelled_fetch_still_caches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.delay = 10.0
    async with running() as cache:
        with trio.move_on_after(1):
            await cache.get("k", src)
        await trio.sleep(20)
        assert (await cache.get("k", src)).source == "cache"
    assert src.count == 1


async def test_repeated_fail_fast_does_not_grow_tracebacks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.error = transient(retry_after=10**5)
    async with running() as cache:
        depths = []
        for _ in range(50):
            try:
                await cache.get("k", src)
            except IdentityProviderError as exc:
                tb, depth = exc.__traceback__, 0
                while tb is not None:
                    tb, depth = tb.tb_next, depth + 1
                depths.append(depth)
        assert src.count == 1
        assert max(depths) == min(depths[1:])


async def test_schedule_heap_stays_bounded(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    async with running() as cache:
        for _ in range(500):
            await cache.get("k", src, force_refresh=True)
        assert src.count == 500
        assert cache.scheduled_wakeups <= 4 * len(cache) + 65


@given(
    seed=st.integers(0, 2**32),
    failures=st.integers(1, 200),
    retry_after=st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
)
def test_backoff_delay_bounds(seed: int, failures: int, retry_after: float | None) -> None:
    cache = TokenCache(random=random.Random(seed))
    delay = cache.backoff_delay(failures, transient(retry_after))
    nominal = min(BACKOFF_CAP_S, 2.0 ** (failures - 1))
    floor = max(nominal / 2, retry_after or 0)
    assert floor <= delay <= max(nominal, retry_after or 0)


async def test_errors_say_when_the_next_attempt_is(autojump_clock: trio.testing.MockClock) -> None:
    """Was: "Try again later" without saying when."""
    src = FakeSource()
    src.error = permanent()
    async with running() as cache:
        with pytest.raises(IdentityProviderError) as first:
            await cache.get("k", src)
        waited = first.value.next_attempt_in_s
        assert waited is not None
        assert waited > 0
        await trio.sleep(waited / 4)
        with pytest.raises(IdentityProviderError) as fast:  # fails fast inside the backoff
            await cache.get("k", src)
        assert fast.value.next_attempt_in_s is not None
        assert fast.value.next_attempt_in_s < waited
        assert src.count == 1


async def test_force_refresh_after_a_failure_tries_once_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Was: after an outage ended, calls failed until the backoff deadline."""
    src = FakeSource()
    src.error = transient()
    async with running() as cache:
        for _ in range(4):  # grow the backoff
            with pytest.raises(IdentityProviderError):
                await cache.get("k", src, force_refresh=True)
        assert src.count == 4  # each explicit force-refresh tried once, none looped
        src.error = None  # the outage is over
        with pytest.raises(IdentityProviderError):  # a plain request still backs off
            await cache.get("k", src)
        assert src.count == 4
        token = await cache.get("k", src, force_refresh=True)
        assert token.token.access_token == "tok-secret-5"
        assert src.count == 5


async def test_force_refresh_honours_the_identity_providers_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.error = transient(retry_after=60)
    async with running() as cache:
        with pytest.raises(IdentityProviderError):
            await cache.get("k", src)
        src.error = None
        with pytest.raises(IdentityProviderError) as info:
            await cache.get("k", src, force_refresh=True)
        assert src.count == 1  # no request inside the provider's Retry-After window
        assert info.value.next_attempt_in_s is not None
        assert info.value.next_attempt_in_s > 50
