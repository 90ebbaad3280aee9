"""Broker: turns a :class:`TokenRequest` into a served token through the legs.

Every token is a :class:`TokenCache` entry: the resource token under
``TokenRequest.cache_key()``, the exchange tokens under
``ExchangeKey("t1" | "t2", agent...)`` (exchange_legs.py). So T1 is fetched
once per agent and reused by every scope, mode and user; T2 once per agent for
every agent user; concurrent cold requests for one key make one fetch per leg.
A blueprint whose credential is a managed identity gets T1 with that
identity's token, itself an entry (``ManagedIdentityKey``) shared by every
agent that uses it.

A fetch is a closure kept by its cache entry (background refreshes call it
again). For OBO it holds the user token, in memory only; once that token has
expired the refresh fails permanently and the entry stops refreshing, while
the token already obtained is served for as long as it is valid. A
long-running OBO session (``obo_session``, see obo_sessions.py) refreshes with
the session's refresh token instead, for as long as the session lives.

A claims challenge (``claims``) or the start of a session is a one-off fetch
(``TokenCache.get(fetch_once=...)``): its token replaces the cached one, while
later refreshes use the plain fetch again (a claims challenge is answered
once, as MSAL's ``claims_challenge`` is). Claims are passed as the cache's
``challenge`` too, so that they honour the key's backoff and are rate-limited
per key (cache.py, "Claims challenges"): any caller can make claims up.

Engine calls are blocking (MSAL, HTTP); every leg makes them through one
``calls.IdpCalls`` (counted, logged), in worker threads under the
broker's limiter with ``abandon_on_cancel=True``. A fetch only gets cancelled
when the cache shuts down (a cancelled *request* never cancels a fetch, see
cache.py), and then nobody wants the answer: MSAL's own HTTP timeout ends the
orphaned thread, and the limiter slot is returned when it does.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Hashable
from typing import Any

import trio

from agentid_client.contract import DEFAULT_MIN_VALIDITY_S, MAX_MIN_VALIDITY_S, min_validity_ok

from ..cache.token_cache import TokenCache
from ..config.values import DaemonSettings
from ..core.clock import epoch_seconds, read_now
from ..core.errors import AgentIdError, IdentityProviderError, InvalidRequest, UnknownProfile
from ..core.logs import get_logger
from ..core.metrics import BoundCounter, Metrics
from ..core.models import (
    AcquiredToken,
    ExchangeKey,
    Mode,
    ResourceKey,
    TokenRequest,
)
from ..idp.managed_identity_key import ManagedIdentityKey
from .calls import IdpCalls, RunSync, assertion_rejected, in_worker_thread
from .exchange_legs import ExchangeLegs, exchange_key
from .mi_legs import ManagedIdentityLegs
from .obo_legs import OboLegs
from .obo_sessions import OboSessions, SessionKey
from .recent_errors import RecentErrors, error_fields
from .replication_wait import (
    DEFAULT_REPLICATION_WAIT_S,
    NOT_REPLICATED_CODES,
    FreshAgents,
    next_pause,
    ran_out_waiting,
)
from .seams import Engine, ServedToken
from .status import (
    is_live,
    key_fields,
    kind_of,
    safe_user,
    status_rows,
    uses_exchange,
)

__all__ = ["Broker", "Engine", "ServedToken"]


def agent_part(key: ResourceKey | ExchangeKey) -> tuple[str, str, str, str]:
    return (key.authority_host, key.tenant_id, key.blueprint_app_id, key.agent_identity_app_id)


_LOG = get_logger("agentid_daemon.broker.broker")


class Broker:
    def __init__(
        self,
        engine: Engine,
        cache: TokenCache,
        metrics: Metrics,
        *,
        limiter: trio.CapacityLimiter,
        obo_session_max_age_s: float = DaemonSettings.obo_session_max_age_s,
        replication_wait_s: float = DEFAULT_REPLICATION_WAIT_S,
        run_sync: RunSync | None = None,
    ) -> None:
        self._engine = engine
        #: Every engine call of every leg. A blocking call runs in a worker
        #: thread under ``limiter`` unless a caller (a test on a virtual
        #: clock) injects its own ``run_sync``.
        self._calls = IdpCalls(metrics, run_sync or functools.partial(in_worker_thread, limiter))
        call = self._calls.call
        #: Agents created through this daemon lately (provision/): their "not
        #: found" answers are retried while replication catches up.
        self.fresh_agents = FreshAgents()
        self.replication_wait_s = replication_wait_s
        self.sessions = OboSessions(max_age_s=obo_session_max_age_s)
        self._obo = OboLegs(self.sessions, cache, engine, call)
        self._mi = ManagedIdentityLegs(cache, engine, call)
        self._exchanges = ExchangeLegs(cache, engine, call, self._mi)
        self._cache = cache
        self._metrics = metrics

        self._recent = RecentErrors()
        # Hit/miss counters per kind, bound once: hits are counted per request.
        self._hit_counters: dict[str, BoundCounter] = {}
        self._miss_counters: dict[str, BoundCounter] = {}
        cache.add_listener(self._on_cache_event)
        metrics.cache_entries.set_function(lambda: len(cache))

    # -- public API --------------------------------------------------------------

    async def get_token(
        self,
        req: TokenRequest,
        *,
        min_validity_s: float = DEFAULT_MIN_VALIDITY_S,
        force_refresh: bool = False,
        claims: str | None = None,
    ) -> ServedToken:
        """A token for ``req``; ``claims`` (compact JSON, claims.py) is a claims
        challenge: never answered from the cache, its token replaces the cached one.

        A failure (but a usage error) is also remembered in :meth:`recent_errors`.
        """
        try:
            return await self._get_replicated(
                req, min_validity_s=min_validity_s, force_refresh=force_refresh, claims=claims
            )
        except (InvalidRequest, UnknownProfile):
            raise  # the caller's mistake, answered to the caller: not the daemon's state
        except Exception as exc:
            self._recent.record(
                self._request_fields(req), error_fields(exc), background=False, at=time.time()
            )
            raise

    async def _get_replicated(
        self,
        req: TokenRequest,
        *,
        min_validity_s: float,
        force_refresh: bool,
        claims: str | None,
    ) -> ServedToken:
        """:meth:`_get_token`, retrying the directory's "not found" (AADSTS700016,
        50034) for an agent created here lately until it replicates, within
        ``replication_wait_s`` (replication_wait.py)."""
        started = trio.current_time()
        pause: float | None = None
        while True:
            try:
                return await self._get_token(
                    req, min_validity_s=min_validity_s, force_refresh=force_refresh, claims=claims
                )
            except IdentityProviderError as exc:
                fresh = self.fresh_agents.is_fresh(
                    req.agent.agent_identity_app_id, req.user_upn, req.user_object_id
                )
                if not fresh or not NOT_REPLICATED_CODES & set(exc.aadsts_codes):
                    raise
                waited = trio.current_time() - started
                pause = next_pause(pause)
                if waited + pause > self.replication_wait_s:
                    raise ran_out_waiting(
                        exc,
                        "ran out waiting for directory replication of the agent created "
                        f"through this daemon: retried for {waited:.0f} s",
                        "Entra has not replicated the new agent to its token service "
                        "yet: try again in a minute",
                    ) from None
                _LOG.info(
                    "waiting for directory replication",
                    agent_identity_app_id=req.agent.agent_identity_app_id,
                    aadsts_codes=list(exc.aadsts_codes),
                    pause_s=pause,
                )
                await trio.sleep(pause)
                force_refresh = True  # past the failed key's backoff, T1 included

    def flush_agent(self, identity: tuple[str, str, str, str]) -> int:
        """Drop every token of one agent identity (``AgentRef.identity``): its
        resource tokens of every profile, mode and user, and its T1/T2."""
        self.fresh_agents.discard(identity[3])
        return self._cache.flush(
            lambda key: isinstance(key, ResourceKey | ExchangeKey) and agent_part(key) == identity
        )

    @staticmethod
    def _request_fields(req: TokenRequest) -> dict[str, Any]:
        return {
            "kind": "resource",
            "profile": req.profile,
            "mode": req.mode.value,
            "authority_host": req.agent.authority_host,
            "tenant_id": req.agent.tenant_id,
            "blueprint_app_id": req.agent.blueprint_app_id,
            "agent_identity_app_id": req.agent.agent_identity_app_id,
            "scopes": list(req.scopes),
            "user": safe_user(req.user_key),
        }

    async def _get_token(
        self,
        req: TokenRequest,
        *,
        min_validity_s: float,
        force_refresh: bool,
        claims: str | None,
    ) -> ServedToken:
        if not min_validity_ok(min_validity_s):
            raise InvalidRequest(
                f"min_validity_s must be between 0 and {MAX_MIN_VALIDITY_S} seconds"
            )
        # config.resolve made req by the same rule; a request made elsewhere is checked here.
        problem = req.mode_problem()
        if problem is not None:
            raise InvalidRequest(problem)
        starting = self._obo.starting(req) if req.obo_session is not None else None
        if force_refresh:
            # "Fresh" means from the credential up: re-acquire the exchange
            # tokens too, so a forced request proves the blueprint credential
            # works now (doctor relies on it) instead of riding on a T1 that a
            # since-broken credential obtained earlier.
            if req.agent.credential.kind == "managed_identity":
                await self._mi.token(req.agent.credential, force_refresh=True)
            await self._exchanges.token("t1", req.agent, force_refresh=True)
            if req.mode is Mode.AUTONOMOUS_USER:
                await self._exchanges.token("t2", req.agent, force_refresh=True)
        once = None
        if claims is not None or starting is not None:
            once = self._resource_fetch(req, claims=claims, start_session_for=starting)
        cached = await self._cache.get(
            req.cache_key(),
            self._resource_fetch(req),
            min_validity_s=min_validity_s,
            force_refresh=force_refresh,
            label="resource",
            info={"profile": req.profile, "obo_session": req.obo_session},
            fetch_once=once,
            allow_stale=True,
            challenge=claims,
        )
        now_trio, now_wall = read_now()
        warning = None
        if cached.stale_error is not None:
            warning = stale_warning(
                cached.expires_at - now_trio, min_validity_s, cached.stale_error
            )
        return ServedToken.of(
            req,
            cached.token,
            expires_on=epoch_seconds(cached.expires_at, now_trio, now_wall) or 0,
            refresh_on=epoch_seconds(cached.refresh_at, now_trio, now_wall) or 0,
            source=cached.source,
            warning=warning,
        )

    def invalidate(self, req: TokenRequest) -> bool:
        """Drop the resource token of ``req`` (T1/T2 stay: they are still good).

        An OBO selection naming a session ends that session; one without a
        user token drops the key's tokens of every user (``flush --profile``).
        """
        if req.mode is Mode.OBO and req.obo_session is not None:
            return self._obo.end(SessionKey.of(req))
        key = req.cache_key()
        if req.mode is Mode.OBO and req.user_token is None:
            return (
                self._cache.flush(
                    lambda k: (
                        isinstance(k, ResourceKey) and dataclasses.replace(k, user=None) == key
                    )
                )
                > 0
            )
        return self._cache.invalidate(key)

    def flush(self) -> int:
        """Drop every token, exchange tokens and OBO sessions included."""
        self._exchanges.clear()
        self.sessions.clear()
        return self._cache.flush()

    def flush_profile(self, req: TokenRequest) -> int:
        """Drop every token of the profile ``req`` names; return how many keys went.

        Every resource token requested through the profile goes, whatever its
        scope, mode, user or overrides (``--tenant-id`` ...), and so do the
        exchange tokens (T1, T2) and the managed identity token of the
        profile's agent and credential, unless a resource token of another
        profile still rides on them: then they stay for that profile, still
        valid, and ``get --force-refresh`` re-acquires them when wanted. OBO
        sessions live on (``flush --obo-session N`` or ``--all`` end them): a
        session's next token comes from its refresh token.
        """
        snapshot = self._cache.snapshot()
        resource: set[Hashable] = {
            s.key
            for s in snapshot
            if isinstance(s.key, ResourceKey) and s.info.get("profile") == req.profile
        }
        staying = [
            s.key for s in snapshot if isinstance(s.key, ResourceKey) and s.key not in resource
        ]
        own = req.agent.credential
        victims: set[Hashable] = set(resource)
        for s in snapshot:
            key = s.key
            if isinstance(key, ExchangeKey) and (*agent_part(key), key.credential) == (
                *req.agent.identity,
                own,
            ):
                if not any(uses_exchange(r, key) for r in staying):
                    victims.add(key)
            elif (
                isinstance(key, ManagedIdentityKey)
                and key.credential == own
                and not any(r.credential == own for r in staying)
            ):
                victims.add(key)
        return self._cache.flush(lambda key: key in victims)

    def apply_settings(self, settings: DaemonSettings) -> None:
        """A reloaded ``[daemon]`` table: running OBO sessions are measured against
        the new ``obo_session_max_age_s`` from now on."""
        self.sessions.max_age_s = settings.obo_session_max_age_s

    def cached_counts(self) -> dict[str, int]:
        """Keys holding a token (or fetching their first), by kind: what ``flush`` reports."""
        counts: dict[str, int] = {}
        for s in self._cache.snapshot():
            if is_live(s):
                kind = kind_of(s)
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def status(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per live cache entry; never a token value."""
        return status_rows(self._cache.snapshot(), *read_now())

    def recent_errors(self) -> list[dict[str, Any]]:
        """The last distinct failures (requests and background refreshes), newest first."""
        return self._recent.to_json()

    def obo_sessions(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per OBO session (hashed user, age); never a token."""
        return self.sessions.status(*read_now())

    # -- legs --------------------------------------------------------------------

    def _resource_fetch(
        self, req: TokenRequest, *, claims: str | None = None, start_session_for: str | None = None
    ) -> Callable[[], Any]:
        """The resource leg for ``req`` as a closure (it keeps an OBO user token alive).

        With ``start_session_for`` (a user fingerprint) the OBO answer's refresh
        token starts ``req``'s session; without it a session request refreshes
        with the session's refresh token.
        """
        agent, mode, scopes = req.agent, req.mode, req.scopes
        user_token, upn, oid = req.user_token, req.user_upn, req.user_object_id
        by_session = req.obo_session is not None and start_session_for is None

        async def once() -> tuple[
            AcquiredToken | None,
            IdentityProviderError | None,
            list[tuple[ExchangeKey, AcquiredToken]],
        ]:
            t1 = await self._exchanges.input("t1", agent)
            used = [(exchange_key("t1", agent), t1.token)]
            try:
                if mode is Mode.AUTONOMOUS_APP:
                    token = await self._calls.call(
                        "autonomous_app",
                        self._engine.acquire_autonomous_app,
                        agent,
                        t1.token.access_token,
                        scopes,
                        claims=claims,
                    )
                elif by_session:
                    token = await self._obo.refresh(req, t1.token.access_token, claims)
                elif mode is Mode.OBO:
                    assert user_token is not None
                    token = await self._calls.call(
                        "obo",
                        self._engine.acquire_obo,
                        agent,
                        t1.token.access_token,
                        user_token,
                        scopes,
                        claims=claims,
                    )
                    if start_session_for is not None:
                        self._obo.started(req, start_session_for, token)
                else:
                    t2 = await self._exchanges.input("t2", agent)
                    used.append((exchange_key("t2", agent), t2.token))
                    token = await self._calls.call(
                        "user_fic",
                        self._engine.acquire_user_fic,
                        agent,
                        t1.token.access_token,
                        t2.token.access_token,
                        scopes,
                        user_upn=upn,
                        user_object_id=oid,
                        claims=claims,
                    )
            except IdentityProviderError as exc:
                if assertion_rejected(exc):
                    return None, exc, used
                raise
            # A refresh token lives in the session store only, never in the cache.
            return dataclasses.replace(token, refresh_token=None), None, used

        async def fetch() -> AcquiredToken:
            token, _, used = await once()
            if token is not None:
                return token
            # An exchange token was refused as expired/invalid: drop exactly the
            # ones we used (a newer one someone else fetched stays) and retry once.
            for key, stale in used:
                self._cache.invalidate(key, if_token=stale)
            token, rejected_again, _ = await once()
            if token is not None:
                return token
            assert rejected_again is not None
            raise rejected_again

        return fetch

    # -- metrics -----------------------------------------------------------------

    def _on_cache_event(self, event: str, *, key: object, label: str, **fields: Any) -> None:
        kind = label or "resource"
        if event == "hit":
            counter = self._hit_counters.get(kind)
            if counter is None:
                counter = self._hit_counters[kind] = self._metrics.cache_hits.labels(kind=kind)
            counter.inc()
        elif event == "miss":
            counter = self._miss_counters.get(kind)
            if counter is None:
                counter = self._miss_counters[kind] = self._metrics.cache_misses.labels(kind=kind)
            counter.inc()
        elif event == "fetch" and fields.get("background"):
            self._metrics.refreshes.inc(kind=kind, outcome=fields.get("outcome", "unknown"))
            if fields.get("outcome") == "error":
                # Nobody waits for a background refresh: its failure is reported here.
                info = next((s.info for s in self._cache.snapshot() if s.key == key), None)
                what = key_fields(key, info) if isinstance(key, Hashable) else {}
                self._recent.record(
                    what,
                    {"error": "refresh_failed", "error_description": fields.get("error")},
                    background=True,
                    at=time.time(),
                )
        elif event == "evict" and isinstance(key, ExchangeKey):
            self._exchanges.forget(key)


def stale_warning(left_s: float, min_validity_s: float, error: BaseException) -> str:
    """One line for a token served below ``min_validity_s``: how long it lasts, and why."""
    why = error.description if isinstance(error, AgentIdError) else type(error).__name__
    return (
        f"no fresh token could be had ({why}); serving the cached token, "
        f"valid for {max(0, int(left_s))} s more (less than the {min_validity_s:g} s asked for)"
    )
