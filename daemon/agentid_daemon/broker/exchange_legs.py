"""The broker's exchange tokens: T1 and T2 of an agent as cache entries.

Each is a :class:`TokenCache` entry under ``ExchangeKey("t1" | "t2", agent...)``,
fetched once per agent and reused by every scope, mode and user (T2 by every
agent user). Served as another leg's assertion only with enough life left for
that leg's round trip. T2 is requested with T1 as its assertion; a T1 the
identity provider refuses is dropped and fetched again, once. Kept apart from
broker.py, which asks here for the inputs of its resource legs; all of it runs
on the trio thread (the engine calls go through the ``call`` it is given,
calls.py, which runs them in a worker thread).
"""

from __future__ import annotations

from typing import Literal

from ..cache.token_cache import CachedToken, DependencyFailed, TokenCache
from ..core.errors import AgentIdError, IdentityProviderError
from ..core.models import AcquiredToken, AgentRef, ExchangeKey
from .calls import Call, assertion_margin, assertion_rejected
from .mi_legs import ManagedIdentityLegs
from .seams import Engine


def exchange_key(leg: Literal["t1", "t2"], agent: AgentRef) -> ExchangeKey:
    return ExchangeKey(leg, *agent.identity, credential=agent.credential)


class ExchangeLegs:
    def __init__(
        self, cache: TokenCache, engine: Engine, call: Call, mi: ManagedIdentityLegs
    ) -> None:
        self._cache = cache
        self._engine = engine
        self._call = call
        self._mi = mi
        # Last seen lifetime per exchange key, to size the assertion margin.
        self._lifetime: dict[ExchangeKey, float] = {}

    def forget(self, key: ExchangeKey) -> None:
        """The key was evicted: its lifetime no longer sizes a margin."""
        self._lifetime.pop(key, None)

    def clear(self) -> None:
        self._lifetime.clear()

    async def input(self, leg: Literal["t1", "t2"], agent: AgentRef) -> CachedToken:
        """An exchange token as the input of another leg's fetch.

        Its failure is raised as :class:`DependencyFailed`, so the dependent
        key retries when the exchange key does instead of backing off itself.
        """
        try:
            return await self.token(leg, agent)
        except AgentIdError as exc:
            raise DependencyFailed(exc, self._cache.retry_at(exchange_key(leg, agent))) from None

    async def token(
        self, leg: Literal["t1", "t2"], agent: AgentRef, *, force_refresh: bool = False
    ) -> CachedToken:
        """T1 or T2 of ``agent`` from the cache, with enough life left to be an assertion."""
        key = exchange_key(leg, agent)
        margin = assertion_margin(self._lifetime.get(key))

        async def fetch() -> AcquiredToken:
            if leg == "t1":
                token = await self._t1(agent)
            else:
                t1 = await self.input("t1", agent)
                try:
                    token = await self._call(
                        "t2", self._engine.acquire_t2, agent, t1.token.access_token
                    )
                except IdentityProviderError as exc:
                    if not assertion_rejected(exc):
                        raise
                    self._cache.invalidate(exchange_key("t1", agent), if_token=t1.token)
                    t1 = await self.input("t1", agent)
                    token = await self._call(
                        "t2", self._engine.acquire_t2, agent, t1.token.access_token
                    )
            self._lifetime[key] = float(token.expires_in)
            return token

        return await self._cache.get(
            key, fetch, min_validity_s=margin, force_refresh=force_refresh, label=leg
        )

    async def _t1(self, agent: AgentRef) -> AcquiredToken:
        if agent.credential.kind == "managed_identity":
            return await self._mi.t1(agent)
        return await self._call("t1", self._engine.acquire_t1, agent)
