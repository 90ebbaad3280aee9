"""Broker + real Engine (MSAL over HTTPS) + the local Entra emulator: request counts."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from agentid_daemon.broker.broker import Broker
from agentid_daemon.cache.token_cache import TokenCache
from agentid_daemon.core.metrics import Metrics
from agentid_daemon.core.models import AgentRef, CredentialSpec, Mode, TokenRequest
from agentid_daemon.idp.engine import Engine

pytestmark = pytest.mark.timeout(90)

GRAPH = "https://graph.microsoft.com/.default"
SECRET_ENV = "AGENTID_TEST_BROKER_BLUEPRINT_SECRET"


def agent_ref(emu: Any) -> AgentRef:
    return AgentRef(
        emu.authority_host,
        emu.tenant_id,
        emu.blueprint_app_id,
        emu.agent_identity_app_id,
        CredentialSpec("env", SECRET_ENV),
        ca_bundle=emu.ca_bundle,
    )


def by_leg(emu: Any) -> dict[str, int]:
    stats = emu.stats()["token_requests"]
    return {leg: n for leg, n in stats["by_leg"].items() if n}


@asynccontextmanager
async def broker_for(
    emu: Any, monkeypatch: pytest.MonkeyPatch, **cache_kwargs: Any
) -> AsyncIterator[Broker]:
    monkeypatch.setenv(SECRET_ENV, emu.blueprint_secret)
    engine = Engine()
    cache = TokenCache(random=random.Random(5), **cache_kwargs)
    broker = Broker(engine, cache, Metrics(), limiter=trio.CapacityLimiter(8))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            yield broker
            nursery.cancel_scope.cancel()
    finally:
        engine.close()


async def test_cold_burst_then_reuse(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.reset()
    ref = agent_ref(emulator)
    with trio.fail_after(60):
        async with broker_for(emulator, monkeypatch) as broker:
            tokens: list[str] = []

            async def one() -> None:
                tokens.append(
                    (
                        await broker.get_token(TokenRequest(ref, Mode.AUTONOMOUS_APP, (GRAPH,)))
                    ).access_token
                )

            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(one)
            assert len(tokens) == 200
            assert len(set(tokens)) == 1
            assert emulator.stats()["token_requests"]["total"] == 2
            assert by_leg(emulator) == {"t1": 1, "autonomous_app": 1}

            await broker.get_token(
                TokenRequest(ref, Mode.AUTONOMOUS_APP, ("https://vault.azure.net/.default",))
            )
            assert by_leg(emulator) == {"t1": 1, "autonomous_app": 2}

            upn = TokenRequest(
                ref, Mode.AUTONOMOUS_USER, (GRAPH,), user_upn=emulator.agent_user_upn.lower()
            )
            oid = TokenRequest(
                ref,
                Mode.AUTONOMOUS_USER,
                ("user.read",),
                user_object_id=emulator.agent_user_object_id,
            )
            await broker.get_token(upn)
            await broker.get_token(oid)
            await broker.get_token(upn)
            assert by_leg(emulator) == {"t1": 1, "autonomous_app": 2, "t2": 1, "user_fic": 2}

            alice = emulator.user_token(emulator.user_upn, emulator.blueprint_app_id)
            obo = TokenRequest(ref, Mode.OBO, ("user.read",), user_token=alice)
            first = await broker.get_token(obo)
            second = await broker.get_token(obo)
            assert first.source == "identity_provider"
            assert second.source == "cache"
            assert by_leg(emulator)["obo"] == 1
            assert by_leg(emulator)["t1"] == 1
            assert alice not in repr(broker.status())


async def test_refresh_ahead_against_emulator(
    emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = emulator_factory(token_lifetime_s=6)
    ref = agent_ref(emu)
    req = TokenRequest(ref, Mode.AUTONOMOUS_APP, (GRAPH,))
    with trio.fail_after(60):
        async with broker_for(emu, monkeypatch) as broker:
            first = await broker.get_token(req, min_validity_s=1)
            assert by_leg(emu) == {"t1": 1, "autonomous_app": 1}
            # Refresh-ahead at 4-4.5 s of the 6 s lifetime, with nobody asking.
            while by_leg(emu).get("autonomous_app", 0) < 2:
                await trio.sleep(0.2)
            # The emulator counts the request before the daemon has stored its
            # answer: ask until the refreshed token is the one served.
            served = await broker.get_token(req, min_validity_s=1)
            while served.access_token == first.access_token:
                await trio.sleep(0.1)
                served = await broker.get_token(req, min_validity_s=1)
            assert served.source == "cache"
            assert served.access_token != first.access_token
            assert served.expires_on >= first.expires_on
