"""The broker waits out directory replication for agents created through the daemon
(virtual time): AADSTS700016 is retried with a doubling pause within the budget,
then reported as having run out; agents not created here fail at once."""

from __future__ import annotations

import pytest
import trio
from test_broker import AGENT_A, FakeEngine, request, running

from agentid_daemon.core.errors import IdentityProviderError


def not_found() -> IdentityProviderError:
    return IdentityProviderError(
        "AADSTS700016: Application with identifier was not found in the directory",
        aadsts_codes=(700016,),
        leg="t1",
        status=400,
    )


async def test_a_fresh_agent_is_retried_until_it_replicates(autojump_clock: object) -> None:
    engine = FakeEngine()
    engine.errors["t1"] = [not_found(), not_found(), not_found()]
    async with running(engine) as (broker, _):
        broker.fresh_agents.add(AGENT_A)
        started = trio.current_time()
        served = await broker.get_token(request())
        assert served.access_token
        assert engine.calls["t1"] == 4
        assert trio.current_time() - started < broker.replication_wait_s


async def test_an_agent_not_created_here_fails_at_once(autojump_clock: object) -> None:
    engine = FakeEngine()
    engine.errors["t1"] = [not_found()]
    async with running(engine) as (broker, _):
        with pytest.raises(IdentityProviderError) as caught:
            await broker.get_token(request())
        assert "replication" not in caught.value.description
        assert engine.calls["t1"] == 1


async def test_the_wait_is_bounded_and_says_so(autojump_clock: object) -> None:
    engine = FakeEngine()
    engine.errors["t1"] = [not_found() for _ in range(100)]
    async with running(engine) as (broker, _):
        broker.fresh_agents.add(AGENT_A)
        started = trio.current_time()
        with pytest.raises(IdentityProviderError) as caught:
            await broker.get_token(request())
        waited = trio.current_time() - started
        assert waited <= broker.replication_wait_s
        assert waited >= broker.replication_wait_s - 6
        assert "ran out waiting for directory replication" in caught.value.description
        assert 700016 in caught.value.aadsts_codes


async def test_flush_agent_drops_its_tokens_and_freshness(autojump_clock: object) -> None:
    engine = FakeEngine()
    async with running(engine) as (broker, _):
        req = request()
        await broker.get_token(req)
        broker.fresh_agents.add(AGENT_A)
        assert broker.flush_agent(req.agent.identity) >= 2  # resource token and T1
        assert not broker.fresh_agents.is_fresh(AGENT_A)
        assert (await broker.get_token(req)).source == "identity_provider"
