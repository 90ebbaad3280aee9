"""The broker's side of long-running OBO sessions (the store is obo_sessions.py).

Which requests start, continue or end a session, the refresh-token leg, and
taking the refresh token out of an OBO answer before it reaches the cache.
Kept apart from broker.py, which calls in here for requests naming
``obo_session``; all of it runs on the trio thread (the leg call itself goes
through the ``call`` it is given, calls.py, which runs the engine in a
worker thread).
"""

from __future__ import annotations

import trio

from ..cache.token_cache import TokenCache, error_summary
from ..core.errors import AgentIdError, IdentityProviderError
from ..core.models import AcquiredToken, TokenRequest
from .calls import Call
from .obo_sessions import OboSessions, SessionKey, user_fingerprint
from .seams import Engine

LEG = "obo_refresh"


class OboLegs:
    def __init__(
        self, sessions: OboSessions, cache: TokenCache, engine: Engine, call: Call
    ) -> None:
        self.sessions = sessions
        self._cache = cache
        self._engine = engine
        self._call = call

    def starting(self, req: TokenRequest) -> str | None:
        """The user a request (re)starts its session for, or None to continue it.

        A user token starts the session unless that user's session is running
        fine; another user's session under the name ends first, with its
        tokens. Without a user token the session must exist (SessionEnded).
        """
        key = SessionKey.of(req)
        session = self.sessions.get(key, trio.current_time())
        if session is None:
            self._cache.flush(key.owns)  # an ended session's tokens are not served
        if req.user_token is None:
            if session is None:
                self.sessions.require(key, trio.current_time())  # raises SessionEnded
            return None
        user = user_fingerprint(req.user_token)
        if session is not None and session.user == user and session.last_error is None:
            return None
        if session is not None and session.user != user:
            self.end(key)
        return user

    def end(self, key: SessionKey) -> bool:
        """End a session and drop its tokens (every scope)."""
        ended = self.sessions.end(key)
        return self._cache.flush(key.owns) > 0 or ended

    async def refresh(self, req: TokenRequest, t1: str, claims: str | None) -> AcquiredToken:
        """The refresh-token grant with the session's refresh token (T1 as assertion)."""
        key = SessionKey.of(req)
        session = self.sessions.require(key, trio.current_time())
        try:
            token = await self._call(
                LEG,
                self._engine.acquire_obo_refresh,
                req.agent,
                t1,
                session.refresh_token,
                req.scopes,
                claims=claims,
            )
        except AgentIdError as exc:
            session.last_error = error_summary(exc)
            raise
        self.sessions.refreshed(key, session, token.refresh_token, trio.current_time())
        return token

    def started(self, req: TokenRequest, user: str, token: AcquiredToken) -> None:
        """Keep the refresh token of the OBO answer that starts ``req``'s session."""
        if not token.refresh_token:
            raise IdentityProviderError(
                "obo: the identity provider answered without a refresh token, so no "
                "long-running session can start (was offline_access refused?)",
                leg="obo",
                hint="run without --obo-session, or grant the agent offline_access",
            )
        self.sessions.start(
            SessionKey.of(req),
            user=user,
            refresh_token=token.refresh_token,
            now=trio.current_time(),
        )
