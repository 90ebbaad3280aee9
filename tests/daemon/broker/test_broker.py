"""Broker over TokenCache with a controllable fake engine (virtual time, inline calls)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
import trio
import trio.testing

from agentid_daemon.broker.broker import Broker, ServedToken
from agentid_daemon.broker.status import kind_of
from agentid_daemon.cache.token_cache import TokenCache
from agentid_daemon.core.errors import ConfigurationError, IdentityProviderError, InvalidRequest
from agentid_daemon.core.metrics import Metrics
from agentid_daemon.core.models import AcquiredToken, AgentRef, CredentialSpec, Mode, TokenRequest

GUARD_S = 10**7  # virtual seconds: with autojump a deadlock jumps here at once
TENANT = "11111111-1111-1111-1111-111111111111"
BLUEPRINT = "22222222-2222-2222-2222-222222222222"
AGENT_A = "33333333-3333-3333-3333-333333333333"
AGENT_B = "44444444-4444-4444-4444-444444444444"
GRAPH = "https://graph.microsoft.com/.default"
VAULT = "https://vault.azure.net/.default"


def expired_assertion() -> IdentityProviderError:
    return IdentityProviderError(
        "AADSTS700024: client assertion is not within its time range",
        aadsts_codes=(700024,),
        leg="autonomous_app",
        status=400,
    )


class FakeEngine:
    """Counts calls per leg; tokens are 'LEG-secret-N'; checks assertions it issued.

    ``lifetimes[leg]`` sets expires_in, ``errors[leg]`` a list of errors raised
    by the next calls, ``delay`` virtual seconds per call, ``revoked`` tokens
    are refused as assertions with AADSTS700024.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lifetimes: dict[str, float] = {}
        self.errors: dict[str, list[BaseException]] = {}
        self.delay = 0.0
        self.revoked: set[str] = set()
        self.issued: dict[str, str] = {}  # token -> leg
        self.expired_user_tokens: set[str] = set()
        self.seen_user: list[tuple[str | None, str | None]] = []
        self.assertions_used: list[str] = []
        self.claims_seen: list[tuple[str, str | None]] = []  # (leg, claims)
        self.refresh_tokens: dict[str, bool] = {}  # issued refresh token -> still valid
        self.refresh_tokens_used: list[str] = []
        self._lock = threading.Lock()

    def _mint(self, leg: str) -> AcquiredToken:
        with self._lock:
            self.calls[leg] += 1
            n = self.calls[leg]
            pending = self.errors.get(leg)
            if pending:
                raise pending.pop(0)
        token = f"{leg}-secret-{n}"
        self.issued[token] = leg
        return AcquiredToken(token, expires_in=self.lifetimes.get(leg, 3600), scope=leg)

    def _check(self, assertion: str, leg: str, caller: str) -> None:
        self.assertions_used.append(assertion)
        assert self.issued.get(assertion) == leg, f"not a {leg}: {assertion}"
        if assertion in self.revoked:
            self.calls[caller] += 1  # a refused call is still a call
            raise expired_assertion()

    def acquire_t1(self, agent: AgentRef) -> AcquiredToken:
        return self._mint("t1")

    def acquire_autonomous_app(
        self, agent: AgentRef, t1: str, scopes: tuple[str, ...], *, claims: str | None = None
    ) -> AcquiredToken:
        self._check(t1, "t1", "autonomous_app")
        self.claims_seen.append(("autonomous_app", claims))
        return self._mint("autonomous_app")

    def _with_refresh_token(self, token: AcquiredToken) -> AcquiredToken:
        rt = f"rt-secret-{len(self.refresh_tokens) + 1}"
        self.refresh_tokens[rt] = True
        return replace(token, refresh_token=rt)

    def acquire_obo(
        self,
        agent: AgentRef,
        t1: str,
        user_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        self._check(t1, "t1", "obo")
        self.claims_seen.append(("obo", claims))
        if user_token in self.expired_user_tokens:
            self.calls["obo"] += 1
            raise IdentityProviderError(
                "AADSTS500133: assertion is not within its valid time range",
                aadsts_codes=(500133,),
                leg="obo",
                status=400,
            )
        return self._with_refresh_token(self._mint("obo"))

    def acquire_obo_refresh(
        self,
        agent: AgentRef,
        t1: str,
        refresh_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        self._check(t1, "t1", "obo_refresh")
        self.claims_seen.append(("obo_refresh", claims))
        self.refresh_tokens_used.append(refresh_token)
        if not self.refresh_tokens.get(refresh_token):
            self.calls["obo_refresh"] += 1
            raise IdentityProviderError(
                "AADSTS70000: the refresh token is revoked",
                aadsts_codes=(70000,),
                leg="obo_refresh",
                status=400,
            )
        return self._with_refresh_token(self._mint("obo_refresh"))

    def acquire_t2(self, agent: AgentRef, t1: str) -> AcquiredToken:
        self._check(t1, "t1", "t2")
        return self._mint("t2")

    def acquire_user_fic(
        self,
        agent: AgentRef,
        t1: str,
        t2: str,
        scopes: tuple[str, ...],
        *,
        user_upn: str | None,
        user_object_id: str | None,
        claims: str | None = None,
    ) -> AcquiredToken:
        self._check(t1, "t1", "user_fic")
        self.claims_seen.append(("user_fic", claims))
        self._check(t2, "t2", "user_fic")
        self.seen_user.append((user_upn, user_object_id))
        return self._mint("user_fic")


def inline_broker(engine: FakeEngine, *args: Any, **kwargs: Any) -> Broker:
    """A Broker running engine calls on the trio thread after ``engine.delay`` virtual
    seconds (its injected ``run_sync``), so that autojump_clock governs all time."""

    async def run_sync(call: Callable[[], AcquiredToken]) -> AcquiredToken:
        await trio.sleep(engine.delay)
        return call()

    return Broker(engine, *args, run_sync=run_sync, **kwargs)


def request(
    agent: str = AGENT_A,
    mode: Mode = Mode.AUTONOMOUS_APP,
    scopes: tuple[str, ...] = (GRAPH,),
    **kwargs: Any,
) -> TokenRequest:
    ref = AgentRef(
        "https://login.example",
        TENANT,
        BLUEPRINT,
        agent,
        CredentialSpec("secret_file", "/run/credentials/bp"),
    )
    return TokenRequest(ref, mode, scopes, **kwargs)


@asynccontextmanager
async def running(
    engine: FakeEngine, broker_cls: Callable[..., Broker] = inline_broker, **cache_kwargs: Any
) -> AsyncIterator[tuple[Broker, Metrics]]:
    cache = TokenCache(random=random.Random(3), **cache_kwargs)
    metrics = Metrics()
    broker = broker_cls(engine, cache, metrics, limiter=trio.CapacityLimiter(4))  # type: ignore[arg-type]
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            yield broker, metrics
            nursery.cancel_scope.cancel()


async def gather(n: int, fn: Callable[[], Any]) -> list[Any]:
    out: list[Any] = []

    async def one() -> None:
        out.append(await fn())

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return out


async def test_200_cold_requests_make_one_call_per_leg(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    engine.delay = 0.5
    async with running(engine) as (broker, metrics):
        served = await gather(200, lambda: broker.get_token(request()))
        assert {s.access_token for s in served} == {"autonomous_app-secret-1"}
        assert {s.source for s in served} == {"identity_provider"}
        assert engine.calls == {"t1": 1, "autonomous_app": 1}
        await broker.get_token(request(scopes=(VAULT,)))  # second scope: T1 reused
        assert engine.calls == {"t1": 1, "autonomous_app": 2}
        await broker.get_token(request(AGENT_B))  # another agent: its own T1
        assert engine.calls == {"t1": 2, "autonomous_app": 3}
        again = await broker.get_token(request())
        assert again.source == "cache"
        assert engine.calls["autonomous_app"] == 3
    assert metrics.identity_provider_requests.value(leg="t1", outcome="ok") == 2
    assert metrics.cache_misses.value(kind="t1") == 2
    assert metrics.cache_hits.value(kind="t1") == 1  # the second scope's T1
    assert metrics.cache_hits.value(kind="resource") == 1


async def test_autonomous_user_reuses_t1_and_t2(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        bob = request(mode=Mode.AUTONOMOUS_USER, user_upn="bob@contoso.example")
        eve = request(mode=Mode.AUTONOMOUS_USER, user_object_id=AGENT_B)
        await gather(50, lambda: broker.get_token(bob))
        await broker.get_token(eve)
        assert engine.calls == {"t1": 1, "t2": 1, "user_fic": 2}
        assert set(engine.seen_user) == {("bob@contoso.example", None), (None, AGENT_B)}
        await broker.get_token(request())  # AutonomousApp of the same agent: same T1
        assert engine.calls == {"t1": 1, "t2": 1, "user_fic": 2, "autonomous_app": 1}


async def test_obo_keys_by_user_token_and_status_hides_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        alice = request(mode=Mode.OBO, scopes=("user.read",), user_token="user-jwt-alice")
        carol = request(mode=Mode.OBO, scopes=("user.read",), user_token="user-jwt-carol")
        await broker.get_token(alice)
        await broker.get_token(alice)
        await broker.get_token(carol)
        assert engine.calls == {"t1": 1, "obo": 2}
        status = broker.status()
    text = json.dumps(status)
    assert "-secret-" not in text  # FakeEngine's token values (rows name "secret_file")
    assert "user-jwt" not in text
    users = sorted(row["user"] for row in status if row["kind"] == "resource")
    assert all(u.startswith("sha256:") and len(u) == 23 for u in users)
    assert {row["kind"] for row in status} == {"t1", "resource"}


async def test_served_token_json_and_repr(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        served = await broker.get_token(request(profile="graph-bot"))
        status = broker.status()
    body = served.to_json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_on",
        "refresh_on",
        "scope",
        "mode",
        "source",
    }
    assert body["token_type"] == "Bearer"
    assert body["mode"] == "AutonomousApp"
    assert isinstance(body["expires_on"], int)
    assert isinstance(body["refresh_on"], int)
    # Clock conversion, not timing: the token was minted "now" with a 3600 s lifetime.
    assert abs(body["expires_on"] - (time.time() + 3600)) < 60
    assert body["expires_on"] - 1200 <= body["refresh_on"] <= body["expires_on"] - 900
    assert "secret" not in repr(served)
    row = next(r for r in status if r["kind"] == "resource")
    assert row["profile"] == "graph-bot"
    assert row["state"] == "valid"
    assert row["scopes"] == [GRAPH]
    assert row["agent_identity_app_id"] == AGENT_A
    assert row["served_from_identity_provider"] == 1
    assert row["last_error"] is None


async def test_invalidate_keeps_t1_and_flush_drops_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        await broker.get_token(request())
        assert broker.invalidate(request())
        assert not broker.invalidate(request())
        await broker.get_token(request())
        assert engine.calls == {"t1": 1, "autonomous_app": 2}
        assert broker.flush() == 2
        await broker.get_token(request())
        assert engine.calls == {"t1": 2, "autonomous_app": 3}


async def test_rejected_assertion_is_replaced_once(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        await broker.get_token(request())
        engine.revoked.add("t1-secret-1")
        broker.invalidate(request())  # the resource token goes, the revoked T1 stays
        served = await broker.get_token(request())
        assert served.access_token == "autonomous_app-secret-3"
        assert engine.calls == {"t1": 2, "autonomous_app": 3}
        # Rejected again after the retry: the error surfaces, no loop.
        engine.errors["autonomous_app"] = [expired_assertion(), expired_assertion()]
        broker.invalidate(request())
        with pytest.raises(IdentityProviderError):
            await broker.get_token(request())
        assert engine.calls == {"t1": 3, "autonomous_app": 5}


async def test_rejected_user_fic_replaces_t1_and_t2(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        req = request(mode=Mode.AUTONOMOUS_USER, user_upn="bob@contoso.example")
        await broker.get_token(req)
        engine.revoked.add("t2-secret-1")
        broker.invalidate(req)
        await broker.get_token(req)
        assert engine.calls == {"t1": 2, "t2": 2, "user_fic": 3}  # rejected call + retry


async def test_force_refresh_reacquires_the_whole_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A forced request proves the blueprint credential works *now* (doctor relies on it)."""
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        app = request()
        user = request(mode=Mode.AUTONOMOUS_USER, user_upn="bob@contoso.example")
        await broker.get_token(app)
        await broker.get_token(user)
        assert engine.calls == {"t1": 1, "autonomous_app": 1, "t2": 1, "user_fic": 1}
        await broker.get_token(app, force_refresh=True)
        assert engine.calls == {"t1": 2, "autonomous_app": 2, "t2": 1, "user_fic": 1}
        await broker.get_token(user, force_refresh=True)
        assert engine.calls == {"t1": 3, "autonomous_app": 2, "t2": 2, "user_fic": 2}
        # Without force the fresh exchange tokens are reused.
        await broker.get_token(request(scopes=("api://other/.default",)))
        assert engine.calls["t1"] == 3


async def test_assertion_needs_validity_left(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    engine.lifetimes = {"t1": 3600, "autonomous_app": 100_000}
    # Short idle timeout: both keys go idle, so nothing refreshes T1 ahead.
    async with running(engine, idle_timeout_s=1000) as (broker, _):
        await broker.get_token(request())
        await trio.sleep(3500)  # T1 has 100 s left: too little to be an assertion
        assert engine.calls == {"t1": 1, "autonomous_app": 1}
        await broker.get_token(request(), force_refresh=True)
        assert engine.calls == {"t1": 2, "autonomous_app": 2}
        assert engine.assertions_used[-1] == "t1-secret-2"


async def test_short_lived_exchange_tokens_are_still_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    engine.lifetimes = {"t1": 20, "autonomous_app": 20}
    async with running(engine) as (broker, _):
        await broker.get_token(request(), min_validity_s=1)
        await broker.get_token(request(scopes=(VAULT,)), min_validity_s=1)
        assert engine.calls["t1"] == 1  # a 120 s margin would refetch every time


async def test_obo_user_token_expiry_stops_refresh_but_serves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    engine.lifetimes = {"t1": 10**6, "obo": 3600}
    async with running(engine, idle_timeout_s=10**6) as (broker, metrics):
        alice = request(mode=Mode.OBO, user_token="user-jwt-alice")
        await broker.get_token(alice)
        engine.expired_user_tokens.add("user-jwt-alice")
        await trio.sleep(2800)  # refresh-ahead tried (2400..2700) and failed for good
        assert engine.calls["obo"] == 2
        served = await broker.get_token(alice, min_validity_s=60)
        assert served.access_token == "obo-secret-1"
        assert served.source == "cache"
        await trio.sleep(700)
        # 100 s left, below the default min_validity_s: served, marked stale.
        stale = await broker.get_token(alice)
        assert stale.access_token == "obo-secret-1"
        assert stale.warning is not None and "500133" in stale.warning
        await trio.sleep(200)  # expired: nothing to serve
        with pytest.raises(IdentityProviderError) as info:
            await broker.get_token(alice)
        assert 500133 in info.value.aadsts_codes
        row = next(r for r in broker.status() if r["kind"] == "resource")
        assert "500133" in row["last_error"]
        assert "user-jwt" not in json.dumps(row)
    # The request at 2800 re-armed one more (failing) attempt after the backoff.
    assert metrics.refreshes.value(kind="resource", outcome="error") == 2


async def test_background_refresh_is_counted(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine()
    async with running(engine, idle_timeout_s=10**6) as (broker, metrics):
        await broker.get_token(request())
        await trio.sleep(2800)
        assert engine.calls["autonomous_app"] == 2
        text = metrics.render()
    assert metrics.refreshes.value(kind="resource", outcome="ok") >= 1
    assert "agentid_helper_cache_entries 2" in text


async def test_request_validation_and_engine_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = FakeEngine()
    engine.errors["t1"] = [ConfigurationError("blueprint credential file is unreadable")]
    async with running(engine) as (broker, metrics):
        with pytest.raises(InvalidRequest):
            await broker.get_token(request(), min_validity_s=-5)
        with pytest.raises(InvalidRequest):
            await broker.get_token(request(), min_validity_s=float("nan"))
        with pytest.raises(InvalidRequest):
            await broker.get_token(request(mode=Mode.OBO))
        with pytest.raises(InvalidRequest):
            await broker.get_token(request(mode=Mode.AUTONOMOUS_USER))
        with pytest.raises(ConfigurationError):
            await broker.get_token(request())
    assert metrics.identity_provider_requests.value(leg="t1", outcome="error") == 1


async def test_real_worker_threads() -> None:
    """Without the inline override: engine calls really go through trio.to_thread."""
    engine = FakeEngine()
    main_thread = threading.get_ident()
    threads: set[int] = set()
    original = engine.acquire_t1

    def spy(agent: AgentRef) -> AcquiredToken:
        threads.add(threading.get_ident())
        return original(agent)

    engine.acquire_t1 = spy  # type: ignore[method-assign]
    with trio.fail_after(30):
        async with running(engine, broker_cls=Broker) as (broker, _):
            served = await gather(100, lambda: broker.get_token(request()))
    assert len({s.access_token for s in served}) == 1
    assert engine.calls == {"t1": 1, "autonomous_app": 1}
    assert threads
    assert main_thread not in threads
    assert isinstance(served[0], ServedToken)


class CredentialCheckingEngine(FakeEngine):
    """T1 fails for a credential source named in ``broken`` (e.g. an unset env var)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()

    def acquire_t1(self, agent: AgentRef) -> AcquiredToken:
        if agent.credential.location in self.broken:
            raise ConfigurationError(f"environment variable {agent.credential.location} is not set")
        return super().acquire_t1(agent)


async def test_credential_sources_of_one_agent_are_kept_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A profile with a broken credential neither rides on nor breaks another's tokens."""
    engine = CredentialCheckingEngine()
    engine.broken.add("NOPE_SECRET")
    good = request()
    ref = good.agent
    bad_ref = AgentRef(
        ref.authority_host,
        ref.tenant_id,
        ref.blueprint_app_id,
        ref.agent_identity_app_id,
        CredentialSpec("env", "NOPE_SECRET"),
    )
    bad = TokenRequest(bad_ref, good.mode, good.scopes)
    async with running(engine) as (broker, _):
        served = await broker.get_token(good)
        with pytest.raises(ConfigurationError):
            await broker.get_token(bad)
        await trio.sleep(3000)  # past refresh-ahead: the good key refreshed with its own source
        again = await broker.get_token(good)
        assert again.access_token != served.access_token
        assert engine.calls["t1"] == 2
        assert engine.calls["autonomous_app"] == 2


async def test_identity_provider_requests_are_logged_by_leg_without_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import io
    import json

    from agentid_daemon.core.logs import configure_logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        engine = FakeEngine()
        async with running(engine) as (broker, _):
            await broker.get_token(request())
            engine.errors["autonomous_app"] = [expired_assertion(), expired_assertion()]
            broker.invalidate(request())
            with pytest.raises(IdentityProviderError):
                await broker.get_token(request())
    finally:
        configure_logging("info", "json", stream=io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    calls = [line for line in lines if line["event"] == "identity provider request"]
    assert [(c["leg"], c["outcome"]) for c in calls][:2] == [("t1", "ok"), ("autonomous_app", "ok")]
    failed = [c for c in calls if c["outcome"] == "error"]
    assert failed
    assert failed[0]["aadsts_codes"] == [700024]
    assert failed[0]["level"] == "warning"
    assert all("duration_ms" in c and c["agent_identity_app_id"] == AGENT_A for c in calls)
    assert "-secret-" not in stream.getvalue()


async def test_resource_waits_for_its_input_not_a_backoff_of_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While T1 fails, the resource key follows T1's retries and recovers with it."""
    engine = FakeEngine()
    outage = [
        IdentityProviderError(
            "AADSTS90033: service unavailable",
            transient=True,
            aadsts_codes=(90033,),
            leg="t1",
            status=503,
        )
        for _ in range(6)
    ]
    engine.errors["t1"] = outage
    async with running(engine) as (broker, _):
        with pytest.raises(IdentityProviderError) as info:
            await broker.get_token(request())
        assert info.value.aadsts_codes == (90033,)  # the requester sees T1's own error
        # T1 is retried in the background with its backoff (1 + 2 + 4 + 8 + 16 s
        # nominal, jittered); the resource key must not pile up failures meanwhile.
        for _ in range(200):
            await trio.sleep(1)
            if engine.calls["autonomous_app"]:
                break
            # The cache's own view: status shows no row for keys without a token.
            rows = {kind_of(s): s for s in broker._cache.snapshot()}
            # Retried with each T1 retry, never on a schedule of its own.
            assert rows["resource"].consecutive_failures == rows["t1"].consecutive_failures
            assert rows["resource"].refresh_at == rows["t1"].refresh_at
            assert broker.status() == []
        t1_ok_at = trio.current_time()
        assert engine.calls["t1"] == 7
        assert engine.calls["autonomous_app"] == 1
        served = await broker.get_token(request())
        assert served.source == "cache"
        assert trio.current_time() == t1_ok_at
