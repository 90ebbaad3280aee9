"""process/engine_host.py: results and errors cross the pair as themselves; the
proxy takes turns on the pair, switches to the parent's engine, survives a dead host;
the legs the host makes ahead answer the real broker's first calls, each once.

The host side runs :func:`engine_host.serve` in a thread over a real socket
pair (the fork itself is covered by the tests that autostart a real daemon:
tests/reliability/test_reliability_kill9.py).
"""

from __future__ import annotations

import functools
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from agentid_daemon.broker.broker import Broker, ServedToken
from agentid_daemon.cache.token_cache import TokenCache
from agentid_daemon.core.errors import ConfigurationError, IdentityProviderError
from agentid_daemon.core.metrics import Metrics
from agentid_daemon.core.models import AcquiredToken, AgentRef, CredentialSpec, Mode, TokenRequest
from agentid_daemon.process import engine_fork, engine_host, first_request
from agentid_daemon.process.engine_host import EngineProxy
from agentid_daemon.process.first_answer import Foresight

AGENT = AgentRef(
    "https://login.example",
    "tenant",
    "blueprint",
    "agent",
    CredentialSpec("secret_file", "/nonexistent"),
)


class ScriptedEngine:
    """Answers every leg with a token naming the leg, or raises ``error``."""

    def __init__(self, error: BaseException | None = None, delay_s: float = 0.0) -> None:
        self.error = error
        self.delay_s = delay_s
        self.calls: list[str] = []
        self.prepared: list[AgentRef] = []
        self._lock = threading.Lock()

    def _answer(self, leg: str) -> AcquiredToken:
        with self._lock:
            self.calls.append(leg)
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return AcquiredToken(f"token-{leg}", 3600.0, refresh_in=1800.0, scope=leg)

    def prepare(self, agent: AgentRef) -> None:
        self.prepared.append(agent)

    def acquire_t1(self, agent: AgentRef, *, assertion: str | None = None) -> AcquiredToken:
        return self._answer("t1")

    def acquire_blueprint_token(
        self, agent: AgentRef, scopes: tuple[str, ...], *, assertion: str | None = None
    ) -> AcquiredToken:
        return self._answer("blueprint")

    def acquire_managed_identity(self, credential: CredentialSpec) -> AcquiredToken:
        return self._answer("mi")

    def acquire_autonomous_app(
        self, agent: AgentRef, t1: str, scopes: tuple[str, ...], *, claims: str | None = None
    ) -> AcquiredToken:
        return self._answer("autonomous_app")

    def acquire_obo(
        self,
        agent: AgentRef,
        t1: str,
        user_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        return self._answer("obo")

    def acquire_obo_refresh(
        self,
        agent: AgentRef,
        t1: str,
        refresh_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        return self._answer("obo_refresh")

    def acquire_t2(self, agent: AgentRef, t1: str) -> AcquiredToken:
        return self._answer("t2")

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
        return self._answer("user_fic")


def start_host(
    engine: ScriptedEngine, prefetched: engine_host.Prefetched | None = None
) -> tuple[socket.socket, threading.Thread]:
    parent_end, host_end = socket.socketpair()
    calls = engine_host.engine_calls(engine)  # type: ignore[arg-type]

    def run() -> None:
        engine_host.serve(host_end, calls, prefetched)
        host_end.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return parent_end, thread


@pytest.fixture
def own() -> Iterator[ScriptedEngine]:
    yield ScriptedEngine()


def proxy_for(
    host: ScriptedEngine, own: ScriptedEngine, *, idle_s: float = 60.0
) -> tuple[EngineProxy, threading.Thread]:
    sock, thread = start_host(host)
    proxy = EngineProxy(sock, None, build=lambda: own, idle_before_switch_s=idle_s)  # type: ignore[arg-type,return-value]
    return proxy, thread


def test_every_leg_crosses_and_its_token_comes_back(own: ScriptedEngine) -> None:
    host = ScriptedEngine()
    proxy, _ = proxy_for(host, own)
    got = [
        proxy.acquire_t1(AGENT, assertion="a"),
        proxy.acquire_blueprint_token(AGENT, ("s",)),
        proxy.acquire_managed_identity(AGENT.credential),
        proxy.acquire_autonomous_app(AGENT, "t1", ("s",), claims="c"),
        proxy.acquire_obo(AGENT, "t1", "user", ("s",)),
        proxy.acquire_obo_refresh(AGENT, "t1", "rt", ("s",)),
        proxy.acquire_t2(AGENT, "t1"),
        proxy.acquire_user_fic(AGENT, "t1", "t2", ("s",), user_upn="u@x", user_object_id=None),
    ]
    legs = ["t1", "blueprint", "mi", "autonomous_app", "obo", "obo_refresh", "t2", "user_fic"]
    assert host.calls == legs  # all on the host: the switch waits for 60 s of quiet
    assert own.calls == []
    assert [t.access_token for t in got] == [f"token-{leg}" for leg in legs]
    assert got[0] == AcquiredToken("token-t1", 3600.0, refresh_in=1800.0, scope="t1")
    proxy.close()


@pytest.mark.parametrize(
    "error",
    [
        IdentityProviderError(
            "AADSTS7000215: invalid client secret",
            transient=False,
            aadsts_codes=(7000215,),
            correlation_id="corr",
            hint="rotate the secret",
            leg="t1",
            status=401,
        ),
        IdentityProviderError("throttled", transient=True, retry_after_s=7.5, status=429),
        ConfigurationError("secret file unreadable", hint="check its mode"),
        RuntimeError("a bug"),
    ],
)
def test_errors_cross_as_themselves(own: ScriptedEngine, error: Exception) -> None:
    proxy, _ = proxy_for(ScriptedEngine(error=error), own)
    with pytest.raises(type(error)) as raised:
        proxy.acquire_t1(AGENT)
    assert str(raised.value) == str(error)
    assert vars(raised.value) == vars(error)  # codes, Retry-After, hint, transient, status
    if isinstance(error, IdentityProviderError):
        assert raised.value.http_status == error.http_status  # type: ignore[attr-defined]
        assert raised.value.error_code == error.error_code  # type: ignore[attr-defined]
    proxy.close()


def test_an_exception_that_cannot_cross_names_only_its_type() -> None:
    class Local(Exception):
        def __reduce__(self) -> tuple[object, ...]:
            raise pickle.PicklingError("no")

    crossed = engine_host.crossable(Local("secret detail"))
    assert isinstance(crossed, RuntimeError)
    assert "secret" not in str(crossed) and "Local" in str(crossed)


def test_concurrent_calls_take_turns_and_all_answer(own: ScriptedEngine) -> None:
    host = ScriptedEngine(delay_s=0.02)
    proxy, _ = proxy_for(host, own)
    results: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        token = proxy.acquire_t2(AGENT, "t1")
        with lock:
            results.append(token.access_token)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["token-t2"] * 8
    assert len(host.calls) + len(own.calls) == 8  # each leg made once, by one engine
    proxy.close()


def test_the_switch_prepares_the_served_agents_and_closes_the_pair(own: ScriptedEngine) -> None:
    host = ScriptedEngine()
    proxy, host_thread = proxy_for(host, own, idle_s=0.05)
    proxy.acquire_t1(AGENT)
    deadline = time.monotonic() + 10
    while not proxy.switched and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.switched
    assert own.prepared == [AGENT]
    host_thread.join(10)
    assert not host_thread.is_alive()  # the host saw EOF and stopped serving
    proxy.acquire_autonomous_app(AGENT, "t1", ("s",))
    assert host.calls == ["t1"] and own.calls == ["autonomous_app"]


def test_a_call_waiting_during_the_switch_goes_to_the_parents_engine(
    own: ScriptedEngine,
) -> None:
    host = ScriptedEngine(delay_s=0.3)
    proxy, _ = proxy_for(host, own)
    first = threading.Thread(target=lambda: proxy.acquire_t1(AGENT))
    first.start()
    time.sleep(0.1)  # the first call holds the pair
    second: list[AcquiredToken] = []
    waiter = threading.Thread(target=lambda: second.append(proxy.acquire_t2(AGENT, "t1")))
    waiter.start()
    time.sleep(0.05)
    assert proxy.own() is own  # the switch, while the first call is in flight
    first.join(10)
    waiter.join(10)
    assert host.calls == ["t1"] and own.calls == ["t2"]
    assert second[0].access_token == "token-t2"


def test_a_dead_host_hands_the_call_to_the_parents_engine(own: ScriptedEngine) -> None:
    sock, peer = socket.socketpair()
    peer.close()  # the host is gone
    proxy = EngineProxy(sock, None, build=lambda: own)  # type: ignore[arg-type,return-value]
    assert proxy.acquire_t1(AGENT).access_token == "token-t1"
    assert own.calls == ["t1"] and proxy.switched


def test_nothing_forks_without_the_clients_variable() -> None:
    assert engine_fork.start_from_environ({}) is None


# ---------------------------------------------------------------- the first legs, made before asked

GRAPH = "https://graph.microsoft.com/.default"
APP_REQUEST = TokenRequest(AGENT, Mode.AUTONOMOUS_APP, (GRAPH,))


async def _served_by_broker(engine: EngineProxy, req: TokenRequest, **options: Any) -> ServedToken:
    """``req`` through the real broker (worker threads, a running cache) over ``engine``."""
    cache = TokenCache()
    broker = Broker(engine, cache, Metrics(), limiter=trio.CapacityLimiter(4))
    outcome: list[ServedToken | Exception] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            try:
                outcome.append(await broker.get_token(req, **options))
            except Exception as exc:  # raised below, not as the nursery's group
                outcome.append(exc)
            nursery.cancel_scope.cancel()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def _broker_over_host(
    host: ScriptedEngine, prefetched: engine_host.Prefetched, req: TokenRequest, **options: Any
) -> tuple[ServedToken, EngineProxy]:
    sock, _ = start_host(host, prefetched)
    proxy = EngineProxy(sock, None, build=ScriptedEngine, idle_before_switch_s=60.0)  # type: ignore[arg-type]
    try:
        return trio.run(functools.partial(_served_by_broker, proxy, req, **options)), proxy
    finally:
        proxy.close()


def test_the_brokers_first_calls_are_answered_by_the_legs_the_host_made_before_it_asked() -> None:
    """The identity provider sees each leg once: made by the host while the daemon
    starts, handed to the broker's identical calls (the messages the proxy sends)."""
    host = ScriptedEngine()
    prefetched = engine_host.first_legs(host, APP_REQUEST, claims=False)  # type: ignore[arg-type]
    assert host.calls == ["t1", "autonomous_app"] and len(prefetched) == 2
    served, proxy = _broker_over_host(host, prefetched, APP_REQUEST)
    assert served.access_token == "token-autonomous_app"
    assert host.calls == ["t1", "autonomous_app"]  # neither made again
    assert proxy.calls_to_host == 2 and len(prefetched) == 0


def test_an_autonomous_user_requests_three_legs_are_made_ahead_and_answered_once() -> None:
    host = ScriptedEngine()
    req = TokenRequest(AGENT, Mode.AUTONOMOUS_USER, (GRAPH,), user_upn="agent-user@example.org")
    prefetched = engine_host.first_legs(host, req, claims=False)  # type: ignore[arg-type]
    assert host.calls == ["t1", "t2", "user_fic"]
    served, proxy = _broker_over_host(host, prefetched, req)
    assert served.access_token == "token-user_fic"
    assert host.calls == ["t1", "t2", "user_fic"]  # none made again
    assert proxy.calls_to_host == 3 and len(prefetched) == 0


def test_a_request_the_host_did_not_foresee_is_made_when_asked() -> None:
    """Another scope than the one foreseen: its own leg, never the foreseen token."""
    host = ScriptedEngine()
    prefetched = engine_host.first_legs(host, APP_REQUEST, claims=False)  # type: ignore[arg-type]
    other = TokenRequest(AGENT, Mode.AUTONOMOUS_APP, ("api://other/.default",))
    _broker_over_host(host, prefetched, other)
    assert host.calls == ["t1", "autonomous_app", "autonomous_app"]
    assert len(prefetched) == 1  # the foreseen resource token was not handed out


@pytest.mark.parametrize(
    ("req", "claims", "options", "then"),
    [
        # a claims challenge: its resource leg carries the claims, made when asked
        (
            APP_REQUEST,
            True,
            {"claims": '{"access_token":{"nbf":{"essential":true}}}'},
            "autonomous_app",
        ),
        # OBO needs the user token only the request carries
        (
            TokenRequest(AGENT, Mode.OBO, (GRAPH,), user_token="user-jwt"),
            False,
            {},
            "obo",
        ),
    ],
)
def test_only_t1_is_made_ahead_when_the_resource_leg_needs_the_request(
    req: TokenRequest, claims: bool, options: dict[str, Any], then: str
) -> None:
    host = ScriptedEngine()
    prefetched = engine_host.first_legs(host, req, claims=claims)  # type: ignore[arg-type]
    assert host.calls == ["t1"]
    _broker_over_host(host, prefetched, req, **options)
    assert host.calls == ["t1", then]


def test_a_managed_identity_blueprint_makes_no_leg_ahead() -> None:
    agent = AgentRef(
        "https://login.example",
        "tenant",
        "blueprint",
        "agent",
        CredentialSpec("managed_identity", ""),
    )
    host = ScriptedEngine()
    prefetched = engine_host.first_legs(
        host, TokenRequest(agent, Mode.AUTONOMOUS_APP, (GRAPH,)), claims=False
    )  # type: ignore[arg-type]
    assert host.calls == [] and len(prefetched) == 0


def test_a_failed_t1_made_ahead_is_the_brokers_error_and_is_not_made_again() -> None:
    host = ScriptedEngine(
        error=IdentityProviderError(
            "AADSTS7000215: bad secret", aadsts_codes=(7000215,), leg="t1", status=401
        )
    )
    prefetched = engine_host.first_legs(host, APP_REQUEST, claims=False)  # type: ignore[arg-type]
    assert host.calls == ["t1"]
    with pytest.raises(IdentityProviderError) as caught:
        _broker_over_host(host, prefetched, APP_REQUEST)
    assert caught.value.aadsts_codes == (7000215,)
    assert host.calls == ["t1"]


def test_a_token_kept_for_the_broker_is_handed_over_aged_by_its_wait() -> None:
    calls = engine_host.engine_calls(ScriptedEngine())  # type: ignore[arg-type]
    prefetched = engine_host.Prefetched(calls)
    message: engine_host.CallMessage = ("acquire_t1", (AGENT,), {"assertion": None})
    made = prefetched.make(message)
    assert made is not None and made.refresh_in == 1800.0
    time.sleep(0.05)
    assert prefetched.take(("acquire_t1", (AGENT,), {"assertion": "another"})) is None
    ok, token = prefetched.take(message) or (False, None)
    assert ok and isinstance(token, AcquiredToken)
    assert token.expires_in <= 3600.0 - 0.05 and token.refresh_in is not None
    assert token.refresh_in <= 1800.0 - 0.05
    assert prefetched.take(message) is None  # once


def test_aged_never_makes_a_refresh_due_before_now() -> None:
    token = AcquiredToken("t", 3600.0, refresh_in=1.0)
    assert engine_host.aged(token, 5.0).refresh_in == 0.0
    assert engine_host.aged(AcquiredToken("t", 10.0), 4.0).expires_in == 6.0


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"profile": 7}'])
def test_a_request_the_host_cannot_resolve_makes_nothing_ahead(
    raw: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call meets the reason again, and reports it as always."""
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(tmp_path / "missing.toml"))
    first = first_request.foresee(raw, None)  # the parent's, right after the fork
    assert first.config is not None  # a missing file is an empty configuration
    foresight = first.foresight
    assert foresight == Foresight()
    host = ScriptedEngine()
    assert engine_host.warm_up(host, foresight) is None  # type: ignore[arg-type]
    assert host.calls == [] and host.prepared == []
