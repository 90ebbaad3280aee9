"""TokenCache: claims challenges are bounded per key (virtual time).

A claims challenge is a one-off fetch with ``challenge=<claims>``. Anyone who
can ask for a token can make claims up, so: the key's backoff holds for them
too, the same challenge joins (or, within the interval, reuses) the fetch
that sent it, and a new one per key is sent at most every
``challenge_interval_s``. A genuine challenge still goes out at once.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_cache import FakeSource, running, transient

from agentid_daemon.cache.token_cache import CHALLENGE_INTERVAL_S
from agentid_daemon.core.errors import IdentityProviderError

KEY = "k"


def claims(n: int) -> str:
    return f'{{"access_token":{{"nbf":{{"essential":true,"value":"{1700000000 + n}"}}}}}}'


async def test_a_genuine_challenge_is_sent_at_once(autojump_clock: trio.testing.MockClock) -> None:
    plain, challenged = FakeSource(name="plain"), FakeSource(name="claims")
    async with running() as cache:
        first = await cache.get(KEY, plain)
        got = await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        assert (got.source, challenged.count) == ("identity_provider", 1)
        assert got.token.access_token != first.token.access_token
        # the challenged token is now the cached one
        assert (await cache.get(KEY, plain)).token.access_token == got.token.access_token


async def test_a_flood_of_one_challenge_is_one_fetch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plain, challenged = FakeSource(name="plain"), FakeSource(name="claims")
    challenged.delay = 1.0
    served: list[tuple[str, str]] = []

    async def ask() -> None:
        got = await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        served.append((got.source, got.token.access_token))

    async with running() as cache:
        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(ask)
        assert challenged.count == 1
        assert served == [("identity_provider", "claims-secret-1")] * 200
        # ... and the same challenge again, later but within the interval
        await trio.sleep(CHALLENGE_INTERVAL_S / 2)
        again = await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        assert (again.source, challenged.count) == ("cache", 1)
        # past the interval the same challenge is a new one: the resource repeats it
        await trio.sleep(CHALLENGE_INTERVAL_S)
        await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        assert challenged.count == 2
    assert plain.count == 0


async def test_new_challenges_are_spaced(autojump_clock: trio.testing.MockClock) -> None:
    plain, challenged = FakeSource(name="plain"), FakeSource(name="claims")
    async with running() as cache:
        await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(0))
        await trio.sleep(5)
        for n in range(1, 200):
            with pytest.raises(IdentityProviderError) as refused:
                await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(n))
            assert refused.value.transient
            assert refused.value.retry_after_s == pytest.approx(CHALLENGE_INTERVAL_S - 5)
            assert refused.value.next_attempt_in_s == pytest.approx(CHALLENGE_INTERVAL_S - 5)
            assert "at most one new challenge" in refused.value.description
        assert challenged.count == 1
        await trio.sleep(CHALLENGE_INTERVAL_S - 5)
        await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(200))
        assert challenged.count == 2
        # a plain request is never held back by the challenge limit
        assert (await cache.get(KEY, plain)).source == "cache"


async def test_the_other_keys_are_not_held_back(autojump_clock: trio.testing.MockClock) -> None:
    challenged = FakeSource(name="claims")
    async with running() as cache:
        for key in ("a", "b", "c"):
            await cache.get(key, FakeSource(), fetch_once=challenged, challenge=claims(1))
        assert challenged.count == 3


async def test_a_challenge_honours_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    """Entra said 429 Retry-After: 120: no challenge for the key goes out before then."""
    plain, challenged = FakeSource(name="plain"), FakeSource(name="claims")
    async with running() as cache:
        await cache.get(KEY, plain)
        await trio.sleep(CHALLENGE_INTERVAL_S)
        challenged.error = transient(retry_after=120)
        with pytest.raises(IdentityProviderError):
            await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        assert challenged.count == 1
        started = trio.current_time()
        await trio.sleep(CHALLENGE_INTERVAL_S + 1)  # the interval has passed, the pause not
        for n in range(50):
            with pytest.raises(IdentityProviderError) as failed:
                await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(n + 2))
            assert failed.value.retry_after_s == 120
            assert failed.value.next_attempt_in_s is not None
            assert failed.value.next_attempt_in_s <= 120 - (CHALLENGE_INTERVAL_S + 1)
        assert challenged.count == 1
        # the cached token is still served meanwhile
        assert (await cache.get(KEY, plain)).source == "cache"
        challenged.error = None
        await trio.sleep(started + 120 - trio.current_time())
        got = await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(99))
        assert got.source == "identity_provider"


async def test_a_challenge_honours_a_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """A key whose last fetch failed (no Retry-After) backs off for challenges too."""
    plain, challenged = FakeSource(name="plain"), FakeSource(name="claims")
    plain.error = transient()
    async with running() as cache:
        for _ in range(4):  # four failures: a backoff of 4-8 s
            with pytest.raises(IdentityProviderError):
                await cache.get(KEY, plain, force_refresh=True)
            await trio.sleep(cache.retry_at(KEY) - trio.current_time())
        with pytest.raises(IdentityProviderError):
            await cache.get(KEY, plain, force_refresh=True)
        assert cache.retry_at(KEY) > trio.current_time()
        with pytest.raises(IdentityProviderError) as failed:
            await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        assert failed.value is plain.error
        assert challenged.count == 0
        plain.error = None  # Entra is back by the time the backoff ends
        await trio.sleep(cache.retry_at(KEY) - trio.current_time())
        await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
        assert challenged.count == 1


async def test_a_failed_challenge_answers_its_repeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same challenge within the interval gets the error its fetch got."""
    plain, challenged = FakeSource(name="plain"), FakeSource(name="claims")
    refused = IdentityProviderError("AADSTS50076: MFA required", aadsts_codes=(50076,))
    challenged.error = refused
    async with running() as cache:
        await cache.get(KEY, plain)
        for _ in range(20):
            with pytest.raises(IdentityProviderError) as failed:
                await cache.get(KEY, plain, fetch_once=challenged, challenge=claims(1))
            assert failed.value is refused
            await trio.sleep(1)
        assert challenged.count == 1


async def test_session_starts_are_not_challenges(autojump_clock: trio.testing.MockClock) -> None:
    """A one-off fetch without ``challenge`` (an OBO session start) is not limited."""
    plain, once = FakeSource(name="plain"), FakeSource(name="start")
    async with running() as cache:
        for _ in range(3):
            await cache.get(KEY, plain, fetch_once=once)
        assert once.count == 3
