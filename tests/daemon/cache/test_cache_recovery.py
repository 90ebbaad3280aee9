"""TokenCache during an outage (virtual time): requests retry 2 s after a
failure while background refreshes keep backing off; Retry-After holds for
everyone; a still-valid token below min_validity_s is served as stale."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_cache import FakeSource, running, transient

from agentid_daemon.cache.token_cache import FOREGROUND_RETRY_S, TokenCache
from agentid_daemon.core.errors import IdentityProviderError


async def fail_fast(cache: TokenCache, src: FakeSource, **kw: object) -> IdentityProviderError:
    with pytest.raises(IdentityProviderError) as info:
        await cache.get("k", src, **kw)  # type: ignore[arg-type]
    return info.value


async def test_a_request_retries_two_seconds_after_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.error = transient()
    async with running(idle_timeout_s=10**6) as cache:
        for _ in range(8):  # eight failures: the backoff is 64..128 s now
            await fail_fast(cache, src)
            await trio.sleep(FOREGROUND_RETRY_S)
        assert src.count >= 8  # each request tried (background retries came between)
        assert cache.retry_at("k") - trio.current_time() > 30
        before = src.count
        err = await fail_fast(cache, src)  # just failed: answered from the failure
        assert err.next_attempt_in_s == pytest.approx(FOREGROUND_RETRY_S)
        assert src.count == before + 1
        again = await fail_fast(cache, src)
        assert src.count == before + 1  # within 2 s of that failure: no new call
        assert again.next_attempt_in_s is not None and again.next_attempt_in_s <= 2
        src.error = None  # the outage is over
        await trio.sleep(FOREGROUND_RETRY_S)
        served = await cache.get("k", src)
        assert served.source == "identity_provider"  # long before the backoff's deadline


async def test_background_refreshes_keep_backing_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    src = FakeSource()
    src.error = transient()
    async with running(idle_timeout_s=10**6) as cache:
        await fail_fast(cache, src)
        await trio.sleep(120)  # nobody asks: background retries at ~1, 2, 4, ... 64 s
        # Backoff (equal jitter): at most 8 attempts in two minutes, not 60.
        assert 4 <= src.count <= 9


async def test_a_burst_of_requests_makes_one_call(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    src.error = transient()
    src.delay = 0.5
    async with running(idle_timeout_s=10**6) as cache:
        for _ in range(8):  # a long backoff: no background attempt in the way
            await fail_fast(cache, src)
            await trio.sleep(FOREGROUND_RETRY_S)
        calls = src.count
        errors: list[BaseException] = []

        async def one() -> None:
            try:
                await cache.get("k", src)
            except IdentityProviderError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(one)
        assert len(errors) == 100
        assert src.count - calls == 1


async def test_retry_after_is_sat_out_by_requests(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource()
    src.error = transient(retry_after=60)
    async with running(idle_timeout_s=10**6) as cache:
        await fail_fast(cache, src)
        src.error = None
        await trio.sleep(10)
        err = await fail_fast(cache, src)
        assert src.count == 1
        assert err.next_attempt_in_s is not None and err.next_attempt_in_s > 40
        await fail_fast(cache, src, force_refresh=True)  # nor force_refresh
        assert src.count == 1


async def test_a_still_valid_token_is_served_stale(autojump_clock: trio.testing.MockClock) -> None:
    src = FakeSource(lifetime=200)  # below the 300 s min_validity_s
    async with running(idle_timeout_s=10**6) as cache:
        first = await cache.get("k", src)
        src.error = transient()
        stale = await cache.get("k", src, allow_stale=True)
        assert stale.token is first.token and stale.stale
        assert stale.expires_at == first.expires_at
        assert isinstance(stale.stale_error, IdentityProviderError)
        await fail_fast(cache, src)  # without allow_stale: the error
        await fail_fast(cache, src, allow_stale=True, force_refresh=True)  # asks for proof
        await trio.sleep(201)
        await fail_fast(cache, src, allow_stale=True)  # expired: nothing to serve


async def test_a_background_retry_that_just_failed_does_not_hold_the_next_request_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Entra comes back just after a background retry failed: the next request tries."""
    src = FakeSource()
    src.error = transient()
    async with running(idle_timeout_s=10**6) as cache:
        await fail_fast(cache, src)  # the request that failed
        asked_at = trio.current_time()
        while src.count < 4:  # three background retries, the last one just now
            await trio.sleep(0.01)
        assert trio.current_time() - asked_at > FOREGROUND_RETRY_S
        src.error = None  # the outage ends right after that background failure
        served = await cache.get("k", src)
        assert served.source == "identity_provider"
        assert src.count == 5
