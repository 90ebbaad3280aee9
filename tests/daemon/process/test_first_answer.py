"""process/first_answer.py: the engine host's own answer to the first request is the
body the API would send (the same checks, the same token, the refresh_on the cache
then keeps), only for what it can answer so; the parent caches it from the same legs.

The host side runs in this process over real socket pairs; the fork, the client and
a real emulator are in tests/reliability/test_reliability_kill9.py.
"""

from __future__ import annotations

import functools
import json
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from test_engine_host import AGENT, APP_REQUEST, ScriptedEngine, start_host

from agentid_client.contract import FIRST_REQUEST_MAX_BYTES
from agentid_daemon.api.routes import Api, ApiState
from agentid_daemon.broker.broker import Broker
from agentid_daemon.cache.schedule import refresh_at
from agentid_daemon.cache.token_cache import TokenCache
from agentid_daemon.config.loader import Config, load_config
from agentid_daemon.core.metrics import Metrics
from agentid_daemon.core.models import AcquiredToken, TokenRequest
from agentid_daemon.process import engine_host, first_request
from agentid_daemon.process.engine_host import EngineProxy, Prefetched
from agentid_daemon.process.first_answer import Foresight

TENANT = "7a3e1c52-4b1d-4e0a-9c61-2f3b5d7e9a10"
CONFIG = f"""
default_profile = "app"

[defaults]
tenant_id = "{TENANT}"
authority_host = "https://login.example"

[profiles.app]
blueprint_app_id = "b1e2c3d4-0001-4a5b-8c7d-000000000b01"
agent_identity_app_id = "a9e8d7c6-0002-4b5a-9d8c-000000000a01"
mode = "AutonomousApp"
blueprint_credential = {{ secret_file = "/nonexistent" }}

[profiles.user]
blueprint_app_id = "b1e2c3d4-0001-4a5b-8c7d-000000000b01"
agent_identity_app_id = "a9e8d7c6-0002-4b5a-9d8c-000000000a01"
mode = "AutonomousUser"
user_upn = "agent-user@example.org"
blueprint_credential = {{ secret_file = "/nonexistent" }}

[profiles.obo]
blueprint_app_id = "b1e2c3d4-0001-4a5b-8c7d-000000000b01"
agent_identity_app_id = "a9e8d7c6-0002-4b5a-9d8c-000000000a01"
mode = "OBO"
blueprint_credential = {{ secret_file = "/nonexistent" }}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The configuration, also the one the parent loads (first_request.foresee)."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(path))
    return load_config(str(path))


def foresight_for(config: Config, fields: dict[str, Any], body: bytes | None = None) -> Foresight:
    """What the parent tells the host for the told ``fields`` and the client's ``body``
    (first_request.foresee, its pair made here)."""
    client, daemon = socket.socketpair()
    if body is not None:
        client.sendall(body)
    client.shutdown(socket.SHUT_WR)
    try:
        fd = None if body is None else daemon.fileno()
        return first_request.foresee(json.dumps(fields), fd).foresight
    finally:
        client.close()
        daemon.close()


def made_for(foresight: Foresight, host: ScriptedEngine) -> Prefetched:
    prefetched = engine_host.warm_up(host, foresight)  # type: ignore[arg-type]
    assert prefetched is not None
    return prefetched


def the_hosts_answer(foresight: Foresight, prefetched: Prefetched) -> dict[str, Any] | None:
    """What the host writes on the client's pair (engine_host.answer_first_request)."""
    client, daemon = socket.socketpair()
    answered = engine_host.answer_first_request(daemon.detach(), foresight, prefetched)
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    finally:
        client.close()
    assert answered == bool(received)
    return json.loads(received) if received else None


async def _api_answer(api: Api, cache: TokenCache, obj: dict[str, Any]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            out.append(await api.token_payload(obj, {}))
            nursery.cancel_scope.cancel()
    return out[0]


def the_apis_answer(
    config: Config, prefetched: Prefetched, host: ScriptedEngine, obj: dict[str, Any]
) -> dict[str, Any]:
    """What POST /v1/token answers for ``obj`` in the parent, its broker's calls
    going to the host that made the legs (the caching of the first answer)."""
    sock, _ = start_host(host, prefetched)
    proxy = EngineProxy(sock, None, build=ScriptedEngine, idle_before_switch_s=60.0)  # type: ignore[arg-type]
    cache = TokenCache()
    broker = Broker(proxy, cache, Metrics(), limiter=trio.CapacityLimiter(4))
    api = Api(ApiState(broker=broker, metrics=None, config=config))
    try:
        return trio.run(functools.partial(_api_answer, api, cache, obj))
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("fields", "body", "legs"),
    [
        ({"profile": "app"}, {"profile": "app"}, ["t1", "autonomous_app"]),
        ({"profile": "user"}, {"profile": "user"}, ["t1", "t2", "user_fic"]),
        # the options the told request lacks: met by a token made a moment ago
        ({}, {"min_validity_s": 600, "force_refresh": True}, ["t1", "autonomous_app"]),
    ],
)
def test_the_first_answer_is_the_apis_and_the_cache_keeps_its_refresh_on(
    config: Config, fields: dict[str, Any], body: dict[str, Any], legs: list[str]
) -> None:
    """The host's body is the one POST /v1/token sends when the parent caches the
    request (the same legs, taken once): the same token, times to the second."""
    host = ScriptedEngine()
    foresight = foresight_for(config, fields, json.dumps(body).encode())
    assert foresight.min_validity_s == body.get("min_validity_s", 300)
    prefetched = made_for(foresight, host)
    ours = the_hosts_answer(foresight, prefetched)
    assert ours is not None
    cached = the_apis_answer(config, prefetched, host, fields)
    assert host.calls == legs  # no leg made twice
    assert {k: v for k, v in ours.items() if not k.endswith("_on")} == {
        k: v for k, v in cached.items() if not k.endswith("_on")
    }
    assert ours["source"] == "identity_provider" and ours["tenant_id"] == TENANT
    for when in ("expires_on", "refresh_on"):
        assert abs(ours[when] - cached[when]) <= 1, when
    # pinned at the earliest point the cache's rule allows: 2/3 of 3600 s, before
    # the identity provider's own refresh_in (1800 s) would have said
    assert ours["refresh_on"] - (ours["expires_on"] - 3600) in range(1798, 1802)


@pytest.mark.parametrize(
    "body",
    [
        b'{"profile": "app", "claims": "{\\"access_token\\":{\\"nbf\\":{\\"essential\\":true}}}"}',
        b'{"profile": "app", "scope": "api://other/.default"}',
        b'{"profile": "user"}',  # not the request the legs are made for
        b'{"profile": "app", "min_validity_s": -1}',
        b'{"profile": "nope"}',
        b'{"profile": "app", "bogus": 1}',
        b"not json",
        b"[1]",
        b'{"profile": "app"' + b" " * FIRST_REQUEST_MAX_BYTES + b"}",
    ],
)
def test_the_parent_lets_the_host_answer_nothing_the_daemon_would_answer_otherwise(
    config: Config, body: bytes
) -> None:
    """A claims challenge, another request, an error to report, a body past the
    limit: the daemon's, on its socket; the legs are made ahead all the same."""
    foresight = foresight_for(config, {"profile": "app"}, body)
    assert foresight.request is not None and foresight.min_validity_s is None
    host = ScriptedEngine()
    assert the_hosts_answer(foresight, made_for(foresight, host)) is None
    assert host.calls == ["t1", "autonomous_app"]


def test_a_token_with_less_left_than_asked_is_not_answered(config: Config) -> None:
    foresight = foresight_for(config, {"profile": "app"}, b'{"min_validity_s": 3600}')
    assert foresight.min_validity_s == 3600  # the made token has less by now
    assert the_hosts_answer(foresight, made_for(foresight, ScriptedEngine())) is None


def test_no_answer_without_a_resource_token(config: Config) -> None:
    """An OBO request (its resource leg needs the user token), a claims challenge
    told (T1 only), a failed leg, a request the parent could not resolve."""
    obo = foresight_for(config, {"profile": "obo"}, b'{"profile": "obo", "user_token": "a.b.c"}')
    assert made_for(obo, ScriptedEngine()).resource is None
    assert the_hosts_answer(obo, made_for(obo, ScriptedEngine())) is None
    claims = foresight_for(config, {"profile": "app", "claims": True}, b'{"profile": "app"}')
    assert claims.claims and claims.min_validity_s is None
    failed = foresight_for(config, {"profile": "app"}, b'{"profile": "app"}')
    assert the_hosts_answer(failed, made_for(failed, ScriptedEngine(error=RuntimeError()))) is None
    unknown = foresight_for(config, {"profile": "nope"}, b'{"profile": "nope"}')
    assert unknown == Foresight()
    assert engine_host.warm_up(ScriptedEngine(), unknown) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(20))
def test_a_pinned_refresh_is_the_one_the_cache_computes_whatever_it_draws(seed: int) -> None:
    """The cache draws its fraction at random (schedule.refresh_at); a token pinned by
    the host comes out at the pinned point for every draw and every wait."""
    rng = random.Random(seed)
    told = rng.choice([None, 3000.0, 900.0])  # the identity provider's refresh_in
    prefetched = engine_host.Prefetched(
        {"acquire_t1": lambda: AcquiredToken("t", 3600.0, refresh_in=told)}
    )
    message: engine_host.CallMessage = ("acquire_t1", (), {})
    sent = time.monotonic()
    assert prefetched.make(message) is not None
    pinned = prefetched.pinned(message)
    assert pinned is not None and pinned.refresh_in is not None
    point = sent + pinned.refresh_in  # where the host says (from its now)
    wait = rng.uniform(0, 5)
    ok, taken = prefetched.take(message) or (False, None)
    assert ok and isinstance(taken, AcquiredToken)
    t0 = sent + wait  # the cache's fetch, later
    later = engine_host.aged(taken, wait)
    assert refresh_at(t0, later, rng) == pytest.approx(point, abs=0.1)


def test_a_client_gone_before_the_answer_is_not_counted_as_answered(config: Config) -> None:
    """The client went to the socket (its daemon listened first): the host's write
    fails, and it tells the parent it answered nothing."""
    foresight = foresight_for(config, {"profile": "app"}, b'{"profile": "app"}')
    prefetched = made_for(foresight, ScriptedEngine())
    client, daemon = socket.socketpair()
    client.close()
    assert not engine_host.answer_first_request(daemon.detach(), foresight, prefetched)


def test_a_host_without_the_clients_pair_or_verdict_closes_it_unanswered(config: Config) -> None:
    """EOF without a byte (or a reset): the client asks the daemon on its socket."""
    foresight = foresight_for(config, {"profile": "app"})  # no pair: no verdict
    assert foresight.request is not None and foresight.min_validity_s is None
    assert the_hosts_answer(foresight, made_for(foresight, ScriptedEngine())) is None


def proxy_over_a_host(host: ScriptedEngine, own: ScriptedEngine, *, answered: bool) -> EngineProxy:
    """A proxy told the APP_REQUEST foresight, over a host (run_host's order: the
    foresight first, then serve) that did or did not answer the client."""
    parent_end, host_end = socket.socketpair()
    calls = engine_host.engine_calls(host)  # type: ignore[arg-type]

    def run() -> None:
        assert isinstance(engine_host.recv_message(host_end), Foresight)
        engine_host.serve(host_end, calls, None, answered)

    threading.Thread(target=run, daemon=True).start()
    proxy = EngineProxy(parent_end, None, build=lambda: own, idle_before_switch_s=0.0)  # type: ignore[arg-type,return-value]
    proxy.foresee(Foresight(APP_REQUEST, min_validity_s=300.0))
    return proxy


def _wait_for_the_switch(proxy: EngineProxy) -> None:
    deadline = time.monotonic() + 10
    while not proxy.switched and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.switched


def test_the_parents_engine_stays_the_hosts_while_it_caches_the_first_answer() -> None:
    """first_answered holds the switch (even with no idle time to wait) until release:
    the caching's calls take the host's legs, never the parent's new engine's."""
    host, own = ScriptedEngine(), ScriptedEngine()
    proxy = proxy_over_a_host(host, own, answered=True)
    assert proxy.first_answered() == APP_REQUEST
    time.sleep(0.2)  # the switcher would have switched by now
    assert not proxy.switched
    proxy.acquire_t1(AGENT)
    assert host.calls == ["t1"] and own.calls == []
    proxy.release()
    _wait_for_the_switch(proxy)
    proxy.close()


def test_a_host_that_answered_nothing_holds_nothing() -> None:
    proxy = proxy_over_a_host(ScriptedEngine(), ScriptedEngine(), answered=False)
    assert proxy.first_answered() is None
    _wait_for_the_switch(proxy)
    proxy.close()


def test_a_resolved_request_compares_equal_to_itself_resolved_again(config: Config) -> None:
    """The host's check "the very request the legs were made for" is equality of
    TokenRequests resolved by the same configuration."""
    a: TokenRequest = config.resolve_selection({"profile": "app"})
    assert a == config.resolve({"profile": "app"})
    assert a != config.resolve({"profile": "app", "scope": "api://other/.default"})
