"""The broker's seams: the engine it drives and the token it serves.

Split from broker.py so that the legs there read on their own; ``Engine`` is
what tests' fake engines conform to (docs/INTERNALS.md), ``ServedToken`` the
200 body of ``POST /v1/token``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..core.models import AcquiredToken, AgentRef, CredentialSpec, TokenRequest


class Engine(Protocol):
    """The engine seam (docs/INTERNALS.md); sync methods, run in worker threads."""

    def acquire_t1(self, agent: AgentRef, *, assertion: str | None = None) -> AcquiredToken: ...
    def acquire_blueprint_token(
        self, agent: AgentRef, scopes: tuple[str, ...], *, assertion: str | None = None
    ) -> AcquiredToken: ...
    def acquire_managed_identity(self, credential: CredentialSpec) -> AcquiredToken: ...
    def acquire_autonomous_app(
        self, agent: AgentRef, t1: str, scopes: tuple[str, ...], *, claims: str | None = None
    ) -> AcquiredToken: ...
    def acquire_obo(
        self,
        agent: AgentRef,
        t1: str,
        user_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken: ...
    def acquire_obo_refresh(
        self,
        agent: AgentRef,
        t1: str,
        refresh_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken: ...
    def acquire_t2(self, agent: AgentRef, t1: str) -> AcquiredToken: ...
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
    ) -> AcquiredToken: ...


@dataclass(frozen=True)
class ServedToken:
    """What ``POST /v1/token`` answers; times are wall-clock epoch seconds."""

    access_token: str = field(repr=False)
    token_type: str
    expires_on: int
    refresh_on: int
    scope: str
    mode: str
    source: Literal["cache", "identity_provider"]
    #: Served below the request's min_validity_s because no fresher token
    #: could be had (an outage); ``warning`` says why, in one line.
    warning: str | None = None

    @classmethod
    def of(
        cls,
        req: TokenRequest,
        token: AcquiredToken,
        *,
        expires_on: int,
        refresh_on: int,
        source: Literal["cache", "identity_provider"],
        warning: str | None = None,
    ) -> ServedToken:
        """``token`` served for ``req`` (the broker's answers, and the engine host's first)."""
        return cls(
            access_token=token.access_token,
            token_type=token.token_type or "Bearer",
            expires_on=expires_on,
            refresh_on=refresh_on,
            scope=token.scope or req.scope_string,
            mode=req.mode.value,
            source=source,
            warning=warning,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_on": self.expires_on,
            "refresh_on": self.refresh_on,
            "scope": self.scope,
            "mode": self.mode,
            "source": self.source,
        }
        if self.warning is not None:
            body["stale"] = True
            body["warning"] = self.warning
        return body

    def answer_for(self, req: TokenRequest) -> dict[str, Any]:
        """The 200 body of ``POST /v1/token`` for ``req``: :meth:`to_json` and which
        identity answered (``get --format az`` reports the tenant, the managed
        identity endpoint the client id). An autostarted daemon's engine host
        answers its first request with it too (process/first_answer.py)."""
        body = self.to_json()
        body["tenant_id"] = req.agent.tenant_id
        body["agent_identity_app_id"] = req.agent.agent_identity_app_id
        return body
