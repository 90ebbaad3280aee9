"""How every leg calls the identity provider, and what it needs of an assertion.

One :class:`IdpCalls` per broker makes every engine call of every leg
(broker.py's resource legs, exchange_legs.py, mi_legs.py, obo_legs.py): in a
worker thread (or the ``run_sync`` a test on a virtual clock injects), counted
in ``identity_provider_requests`` and logged by leg. The legs get its
:meth:`IdpCalls.call` at construction, typed as :class:`Call`, so no leg
reaches into the broker.

The assertion rules are here for the same reason: T1 is the assertion of the
resource legs and of T2, a managed identity's token the assertion of T1, and
every one of those legs asks the same two questions (how much life must an
assertion have left; does this error say the assertion was refused).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from ..core.errors import AgentIdError, IdentityProviderError
from ..core.logs import get_logger
from ..core.metrics import Metrics
from ..core.models import AcquiredToken, AgentRef

_LOG = get_logger("agentid_daemon.broker.calls")

# An assertion must outlive the next leg's round trip (and clock skew at the
# identity provider); capped to a quarter of the token's lifetime so that
# short-lived tokens (the emulator's test mode) are still reused.
ASSERTION_MIN_VALIDITY_S = 120.0
# Entra rejects a client assertion / federated credential that expired or is
# malformed with these; one retry with a freshly minted T1/T2 is worth it.
REJECTED_ASSERTION_CODES = frozenset({700024, 50027})

#: Runs a blocking engine call without blocking trio (Broker's ``run_sync``).
RunSync = Callable[[Callable[[], AcquiredToken]], Awaitable[AcquiredToken]]


class Call(Protocol):
    """The legs' seam: ``call(leg, engine_method, *args, **kwargs)``, counted and logged."""

    def __call__(
        self, leg: str, fn: Callable[..., AcquiredToken], /, *args: Any, **kwargs: Any
    ) -> Awaitable[AcquiredToken]: ...


def assertion_rejected(exc: IdentityProviderError) -> bool:
    """Whether the identity provider refused the assertion itself (expired, malformed)."""
    return any(code in REJECTED_ASSERTION_CODES for code in exc.aadsts_codes)


def assertion_margin(lifetime_s: float | None) -> float:
    """The life an exchange token must have left to be served as an assertion.

    ``lifetime_s`` is the token's last seen lifetime (None before the first).
    """
    if lifetime_s is None:
        return ASSERTION_MIN_VALIDITY_S
    return min(ASSERTION_MIN_VALIDITY_S, lifetime_s / 4)


async def in_worker_thread(
    limiter: trio.CapacityLimiter, call: Callable[[], AcquiredToken]
) -> AcquiredToken:
    """The default ``run_sync``: a worker thread, at most ``limiter`` at once.

    ``abandon_on_cancel``: a fetch is only cancelled when the cache shuts down,
    and then nobody wants the answer (MSAL's own HTTP timeout ends the thread).
    """
    return await trio.to_thread.run_sync(call, limiter=limiter, abandon_on_cancel=True)


class IdpCalls:
    """Every identity-provider call of one broker: run by ``run_sync``, counted, logged."""

    def __init__(self, metrics: Metrics, run_sync: RunSync) -> None:
        self._metrics = metrics
        self._run_sync = run_sync

    async def call(
        self, leg: str, fn: Callable[..., AcquiredToken], /, *args: Any, **kwargs: Any
    ) -> AcquiredToken:
        """One identity-provider call in a worker thread, counted and logged by leg.

        The log line carries what journald users filter on (leg, outcome,
        duration_ms, agent, and for failures the AADSTS codes and correlation
        id); the arguments (assertions, user tokens) never reach it.
        """
        agent = args[0] if args and isinstance(args[0], AgentRef) else None
        started = trio.current_time()
        counter = self._metrics.identity_provider_requests
        try:
            token = await self._run_sync(functools.partial(fn, *args, **kwargs))
        except IdentityProviderError as exc:
            outcome = "transient_error" if exc.transient else "error"
            counter.inc(leg=leg, outcome=outcome)
            _log_call(leg, outcome, started, agent, exc)
            raise
        except Exception as exc:
            counter.inc(leg=leg, outcome="error")
            _log_call(leg, "error", started, agent, exc)
            raise
        counter.inc(leg=leg, outcome="ok")
        _log_call(leg, "ok", started, agent, None)
        return token


def _log_call(
    leg: str, outcome: str, started: float, agent: AgentRef | None, exc: BaseException | None
) -> None:
    fields: dict[str, Any] = {
        "leg": leg,
        "outcome": outcome,
        "duration_ms": round((trio.current_time() - started) * 1000, 1),
    }
    if agent is not None:
        fields["agent_identity_app_id"] = agent.agent_identity_app_id
    if isinstance(exc, IdentityProviderError):
        fields.update(
            aadsts_codes=list(exc.aadsts_codes),
            correlation_id=exc.correlation_id,
            error=exc.description,
        )
    elif isinstance(exc, AgentIdError):
        fields["error"] = exc.description
    elif exc is not None:
        fields["error"] = type(exc).__name__  # foreign text may hold anything
    log = _LOG.info if exc is None else _LOG.warning
    log("identity provider request", **fields)
