"""Long-running OBO sessions: the refresh tokens that outlive a user's token.

An agent working for a user for hours cannot keep asking that user for a
fresh token. Entra's answer (Id.Web's long-running OBO; for agent identities
the refresh-token grant with T1 as the client assertion in
``agent-on-behalf-of-oauth-flow.md``) is the refresh token the OBO response
carries. ``get --obo-session NAME`` with a user token starts a session under
(agent, NAME) and keeps that refresh token here; later requests naming the
session need no user token: the broker refreshes with the stored refresh
token, and each answer's new refresh token replaces it.

Refresh tokens live in this store only: in memory, hidden from ``repr``,
never in a cache entry, a log line, status or an error. A session ends on
``flush --obo-session NAME``, ``flush --all``, a new user starting the same
name, or ``obo_session_max_age_s`` after it started.

All times are on the trio clock; status converts them at the edge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agentid_client.redact import quoted

from ..config.fields import unverified_claims
from ..core.clock import epoch_seconds
from ..core.errors import InvalidRequest
from ..core.models import OBO_SESSION_USER_PREFIX, ResourceKey, TokenRequest


@dataclass(frozen=True)
class SessionKey:
    """(authority, tenant, blueprint, agent, session name)."""

    authority_host: str
    tenant_id: str
    blueprint_app_id: str
    agent_identity_app_id: str
    name: str

    @classmethod
    def of(cls, req: TokenRequest) -> SessionKey:
        assert req.obo_session is not None
        return cls(*req.agent.identity, req.obo_session)

    def owns(self, key: object) -> bool:
        """Whether ``key`` is a resource token of this session (any scope)."""
        return (
            isinstance(key, ResourceKey)
            and key.user == OBO_SESSION_USER_PREFIX + self.name
            and (key.authority_host, key.tenant_id, key.blueprint_app_id, key.agent_identity_app_id)
            == (
                self.authority_host,
                self.tenant_id,
                self.blueprint_app_id,
                self.agent_identity_app_id,
            )
        )


@dataclass
class Session:
    """One session's state; ``refresh_token`` never leaves the daemon."""

    user: str  # a hash of the user's identity (see user_fingerprint), safe to show
    refresh_token: str = field(repr=False)
    started_at: float
    last_refresh: float | None = None
    refreshes: int = 0
    last_error: str | None = None


class SessionEnded(InvalidRequest):
    """A request named a session that does not exist (any more)."""


def user_fingerprint(user_token: str) -> str:
    """A short hash naming the token's user (tenant + object id), or the token itself.

    Read without verifying the signature: it only tells whether a new user
    token is the same user's (continue the session) or another's (restart),
    the identity provider verifies the token when it is used.
    """
    subject = user_token
    claims = unverified_claims(user_token)
    if claims is not None and claims.get("oid"):
        subject = f"{claims.get('tid', '')}/{claims['oid']}"
    return "sha256:" + hashlib.sha256(subject.encode()).hexdigest()[:16]


class OboSessions:
    """The sessions of one daemon (memory only)."""

    def __init__(self, *, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._sessions: dict[SessionKey, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __repr__(self) -> str:
        return f"OboSessions({len(self._sessions)} sessions)"

    def get(self, key: SessionKey, now: float) -> Session | None:
        """The live session, or None (an expired one is dropped here)."""
        session = self._sessions.get(key)
        if session is not None and now - session.started_at >= self.max_age_s:
            del self._sessions[key]
            return None
        return session

    def require(self, key: SessionKey, now: float) -> Session:
        session = self.get(key, now)
        if session is None:
            raise SessionEnded(
                f"no OBO session {quoted(key.name)} for agent {key.agent_identity_app_id} "
                "(never started, flushed, or older than obo_session_max_age_s)",
                hint="start it again: the same command with --user-token-file",
            )
        return session

    def start(self, key: SessionKey, *, user: str, refresh_token: str, now: float) -> Session:
        session = Session(user=user, refresh_token=refresh_token, started_at=now)
        self._sessions[key] = session
        return session

    def refreshed(
        self, key: SessionKey, session: Session, refresh_token: str | None, now: float
    ) -> None:
        """Record a refresh of ``session`` (if it is still the one under ``key``)."""
        if self._sessions.get(key) is not session:
            return  # ended or restarted meanwhile: its successor keeps its own token
        if refresh_token:
            session.refresh_token = refresh_token  # rotation: the newest one wins
        session.last_refresh = now
        session.refreshes += 1
        session.last_error = None

    def end(self, key: SessionKey) -> bool:
        return self._sessions.pop(key, None) is not None

    def clear(self) -> list[SessionKey]:
        keys = list(self._sessions)
        self._sessions.clear()
        return keys

    def items(self) -> Iterator[tuple[SessionKey, Session]]:
        return iter(list(self._sessions.items()))

    def status(self, now_trio: float, now_wall: float) -> list[dict[str, Any]]:
        """JSON-ready rows: hashed user, age, last refresh; never a token."""

        def wall(t: float | None) -> int | None:
            return epoch_seconds(t, now_trio, now_wall)

        return [
            {
                "name": key.name,
                "authority_host": key.authority_host,
                "tenant_id": key.tenant_id,
                "blueprint_app_id": key.blueprint_app_id,
                "agent_identity_app_id": key.agent_identity_app_id,
                "user": s.user,
                "started_on": wall(s.started_at),
                "age_s": round(now_trio - s.started_at, 1),
                "ends_on": wall(s.started_at + self.max_age_s),
                "last_refresh": wall(s.last_refresh),
                "refreshes": s.refreshes,
                "last_error": s.last_error,
            }
            for key, s in self.items()
        ]
