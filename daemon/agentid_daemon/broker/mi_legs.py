"""The broker's side of a managed identity as the blueprint's credential.

T1 for such a blueprint is requested with the managed identity's token as the
client assertion. That token is a cache entry of its own
(:class:`~agentid_daemon.idp.managed_identity_key.ManagedIdentityKey`, one per
identity, shared by every agent naming it) and is refreshed ahead of expiry
like T1. Kept apart from
broker.py, which calls :meth:`ManagedIdentityLegs.t1` for such blueprints;
it runs on the trio thread (the engine calls go through the ``call`` it is
given, calls.py, which runs them in a worker thread).
"""

from __future__ import annotations

from ..cache.token_cache import CachedToken, DependencyFailed, TokenCache
from ..core.errors import AgentIdError, IdentityProviderError
from ..core.models import AcquiredToken, AgentRef, CredentialSpec
from ..idp.managed_identity_key import LEG, ManagedIdentityKey
from .calls import Call, assertion_margin, assertion_rejected
from .seams import Engine


class ManagedIdentityLegs:
    def __init__(self, cache: TokenCache, engine: Engine, call: Call) -> None:
        self._cache = cache
        self._engine = engine
        self._call = call
        # Last lifetime per identity: a short-lived token (the emulator's test
        # mode) needs only a quarter of it left to serve as an assertion.
        self._lifetime: dict[ManagedIdentityKey, float] = {}

    async def t1(self, agent: AgentRef) -> AcquiredToken:
        """T1 of ``agent`` with its blueprint's managed identity token as the assertion."""
        mi = await self._input(agent.credential)
        try:
            return await self._call(
                "t1", self._engine.acquire_t1, agent, assertion=mi.token.access_token
            )
        except IdentityProviderError as exc:
            if not assertion_rejected(exc):
                raise
        # The managed identity's token was refused (expired early, revoked):
        # drop exactly that one and retry once with a fresh one.
        self._cache.invalidate(ManagedIdentityKey(agent.credential), if_token=mi.token)
        mi = await self._input(agent.credential)
        return await self._call(
            "t1", self._engine.acquire_t1, agent, assertion=mi.token.access_token
        )

    async def token(
        self, credential: CredentialSpec, *, force_refresh: bool = False
    ) -> CachedToken:
        """The managed identity's exchange token from the cache (fetched when needed)."""
        key = ManagedIdentityKey(credential)
        margin = assertion_margin(self._lifetime.get(key))

        async def fetch() -> AcquiredToken:
            got = await self._call(LEG, self._engine.acquire_managed_identity, credential)
            self._lifetime[key] = float(got.expires_in)
            return got

        return await self._cache.get(
            key, fetch, min_validity_s=margin, force_refresh=force_refresh, label=LEG
        )

    async def _input(self, credential: CredentialSpec) -> CachedToken:
        """The token as T1's input: its failure makes T1 retry when it does."""
        try:
            return await self.token(credential)
        except AgentIdError as exc:
            key = ManagedIdentityKey(credential)
            raise DependencyFailed(exc, self._cache.retry_at(key)) from None
