"""Broker: claims challenges, long-running OBO sessions, flushing rejected tokens.

Fake engine, virtual time (see test_broker.py); the same cases against MSAL and
the emulator are in test_resource_says_no_emulator.py.
"""

from __future__ import annotations

import json
import random

import pytest
import trio
import trio.testing
from test_broker import GRAPH, VAULT, FakeEngine, gather, request, running

from agentid_daemon.cache.token_cache import TokenCache
from agentid_daemon.core.errors import IdentityProviderError, InvalidRequest
from agentid_daemon.core.models import AcquiredToken, Mode, TokenRequest

CLAIMS = json.dumps({"access_token": {"nbf": {"essential": True, "value": "1700000000"}}})


def user_token(name: str) -> str:
    """A JWT-shaped user token naming a user (oid) the way Entra's do."""
    import base64

    def b64(obj: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'oid': name, 'tid': 't', 'exp': '1'})}.sig"


# -- claims challenges -----------------------------------------------------------------


async def test_claims_challenge_replaces_the_cached_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        first = await broker.get_token(request())
        assert (await broker.get_token(request())).source == "cache"

        challenged = await broker.get_token(request(), claims=CLAIMS)
        assert challenged.source == "identity_provider"
        assert challenged.access_token != first.access_token
        assert engine.claims_seen[-1] == ("autonomous_app", CLAIMS)

        # the cache now serves the new token, and later refreshes carry no claims
        again = await broker.get_token(request())
        assert (again.source, again.access_token) == ("cache", challenged.access_token)
        await trio.sleep(3600)
        await broker.get_token(request())
        assert engine.claims_seen[-1] == ("autonomous_app", None)
        assert engine.calls["t1"] == 2  # refresh of T1 after an hour, not per challenge


async def test_claims_challenge_never_joins_a_plain_fetch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fetch already running without the claims cannot answer the challenge."""
    engine = FakeEngine()
    engine.delay = 1.0
    async with running(engine) as (broker, _):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.get_token, request())
            await trio.sleep(0.5)  # the plain fetch is in flight
            served = await broker.get_token(request(), claims=CLAIMS)
        assert engine.calls["autonomous_app"] == 2
        assert [c for _, c in engine.claims_seen] == [None, CLAIMS]
        assert served.access_token == "autonomous_app-secret-2"


async def test_claims_pass_through_every_mode(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        await broker.get_token(request(mode=Mode.OBO, user_token=user_token("u")), claims=CLAIMS)
        await broker.get_token(
            request(mode=Mode.AUTONOMOUS_USER, user_upn="a@c.com"), claims=CLAIMS
        )
    assert engine.claims_seen == [("obo", CLAIMS), ("user_fic", CLAIMS)]


# -- long-running OBO sessions ---------------------------------------------------------


def session_req(
    name: str = "job-1", token: str | None = None, scopes: tuple[str, ...] = (GRAPH,)
) -> TokenRequest:
    return request(mode=Mode.OBO, scopes=scopes, user_token=token, obo_session=name)


async def test_session_outlives_the_user_token(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    engine.lifetimes["obo"] = engine.lifetimes["obo_refresh"] = 600
    alice = user_token("alice")
    async with running(engine) as (broker, _):
        started = await broker.get_token(session_req(token=alice))
        assert engine.calls["obo"] == 1
        # the user token has expired: the identity provider would refuse it now
        engine.expired_user_tokens.add(alice)
        later = await broker.get_token(session_req())
        assert later.source == "cache"
        assert later.access_token == started.access_token

        await trio.sleep(4 * 3600)  # far past the user token and many token lifetimes
        fresh = await broker.get_token(session_req())
        assert fresh.access_token.startswith("obo_refresh-secret-")
        assert engine.calls["obo"] == 1  # the user token was never used again
        # refresh tokens rotate: each refresh used the one the previous answer carried
        used = engine.refresh_tokens_used
        assert used[0] == "rt-secret-1"
        assert used == [f"rt-secret-{i}" for i in range(1, len(used) + 1)]
        # another scope of the same session needs no user token either
        vault = await broker.get_token(session_req(scopes=(VAULT,)))
        assert vault.access_token.startswith("obo_refresh-secret-")

        (row,) = broker.obo_sessions()
        assert row["name"] == "job-1"
        assert row["refreshes"] >= 2
        assert row["user"].startswith("sha256:")
        assert "alice" not in json.dumps(row)
        text = json.dumps([broker.status(), broker.obo_sessions()])
        assert "rt-secret" not in text
        assert "-secret-" not in text  # FakeEngine's tokens (rows name "secret_file")


async def test_refresh_tokens_never_reach_the_cache(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    cache = TokenCache(random=random.Random(3))
    async with running(engine, cache=cache) as (broker, _):
        await broker.get_token(session_req(token=user_token("alice")))

        async def not_fetched() -> AcquiredToken:
            raise AssertionError("the cache fetched instead of serving what it holds")

        rows = cache.snapshot()
        assert rows
        for row in rows:  # every token the cache holds, as it would serve it
            held = await cache.get(row.key, not_fetched, min_validity_s=0)
            assert held.token.refresh_token is None
        assert "rt-secret" not in repr(broker.sessions.items())


async def test_session_without_start_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with running(FakeEngine()) as (broker, _):
        with pytest.raises(InvalidRequest, match="no OBO session 'job-9'") as info:
            await broker.get_token(session_req("job-9"))
        assert "--user-token-file" in (info.value.hint or "")


async def test_session_ends_after_max_age(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    engine.lifetimes["obo"] = engine.lifetimes["obo_refresh"] = 600
    async with running(engine) as (broker, _):
        broker.sessions.max_age_s = 3000
        await broker.get_token(session_req(token=user_token("alice")))
        await trio.sleep(2000)
        await broker.get_token(session_req())
        await trio.sleep(1000)
        with pytest.raises(InvalidRequest, match="obo_session_max_age_s"):
            await broker.get_token(session_req())
        assert broker.obo_sessions() == []
        assert all(row["kind"] == "t1" for row in broker.status())  # its tokens went too
        # a user token starts it again
        await broker.get_token(session_req(token=user_token("alice")))
        assert engine.calls["obo"] == 2


async def test_flush_obo_session_ends_it(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        await broker.get_token(session_req(token=user_token("alice")))
        await broker.get_token(session_req("job-2", token=user_token("bob")))
        assert broker.invalidate(session_req())
        with pytest.raises(InvalidRequest, match="no OBO session 'job-1'"):
            await broker.get_token(session_req())
        assert [s["name"] for s in broker.obo_sessions()] == ["job-2"]
        assert (await broker.get_token(session_req("job-2"))).source == "cache"
        broker.flush()
        assert broker.obo_sessions() == []


async def test_another_user_restarts_the_session_and_drops_its_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        await broker.get_token(session_req(token=user_token("alice")))
        alice_vault = await broker.get_token(session_req(scopes=(VAULT,)))
        # the same user's newer token continues the session (served from the cache)
        same = await broker.get_token(session_req(token=user_token("alice")))
        assert same.source == "cache"
        assert engine.calls["obo"] == 1

        await broker.get_token(session_req(token=user_token("bob")))
        assert engine.calls["obo"] == 2
        bob_vault = await broker.get_token(session_req(scopes=(VAULT,)))
        assert bob_vault.access_token != alice_vault.access_token  # never alice's token


async def test_revoked_refresh_token_shows_and_a_user_token_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    engine.lifetimes["obo"] = 600
    async with running(engine) as (broker, _):
        await broker.get_token(session_req(token=user_token("alice")))
        engine.refresh_tokens["rt-secret-1"] = False  # revoked at the identity provider
        await trio.sleep(600)
        with pytest.raises(IdentityProviderError, match="revoked"):
            await broker.get_token(session_req())
        (row,) = broker.obo_sessions()
        assert "AADSTS70000" in row["last_error"]
        assert "rt-secret" not in row["last_error"]
        served = await broker.get_token(session_req(token=user_token("alice")))
        assert served.access_token.startswith("obo-secret-")
        assert engine.calls["obo"] == 2
        assert broker.obo_sessions()[0]["last_error"] is None


async def test_plain_obo_is_unchanged(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        await broker.get_token(request(mode=Mode.OBO, user_token=user_token("alice")))
        assert broker.obo_sessions() == []
        assert engine.calls["obo"] == 1


async def test_concurrent_session_requests_share_one_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    engine.lifetimes["obo"] = 600
    engine.delay = 0.5
    async with running(engine) as (broker, _):
        await broker.get_token(session_req(token=user_token("alice")))
        await trio.sleep(3600)
        await gather(20, lambda: broker.get_token(session_req()))
        assert engine.calls["obo_refresh"] <= 2  # the background refresh may have run too


# -- flush of an OBO profile without a user token ----------------------------------


async def test_flush_obo_selection_without_user_token_drops_every_user(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        for name in ("alice", "bob"):
            await broker.get_token(request(mode=Mode.OBO, user_token=user_token(name)))
        await broker.get_token(session_req(token=user_token("carol")))
        await broker.get_token(
            request(mode=Mode.OBO, scopes=(VAULT,), user_token=user_token("alice"))
        )
        assert broker.invalidate(request(mode=Mode.OBO))  # what `flush --profile` resolves to
        left = [(r["kind"], r.get("scopes")) for r in broker.status()]
        assert sorted(left, key=str) == [("resource", [VAULT]), ("t1", None)]
        # the session itself survives: its next request refreshes with its refresh token
        served = await broker.get_token(session_req())
        assert served.access_token.startswith("obo_refresh-secret-")
