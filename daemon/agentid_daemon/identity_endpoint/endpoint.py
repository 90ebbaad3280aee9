"""The managed identity endpoint's request handler: one GET path, per-session header.

This is the one surface of the daemon that is not behind the Unix socket's
uid check (any local process can connect to 127.0.0.1), so a request must
carry the ``X-IDENTITY-HEADER`` of a live session (random, >= 128 bits,
compared in constant time by :class:`~.identity_sessions.SessionTable`).
:class:`~.protocol.HttpServer` already refuses requests carrying ``Origin``
or ``Referer`` (so a CORS preflight is never answered); this handler also
refuses a ``Host`` that does not name loopback (DNS rebinding), every method
but ``GET`` and every path but :data:`~.mi_protocol.PATH`.

The header's value never reaches a log line, a status or an error message.
A token is served through :meth:`Api.token_payload` with the session's
selection and the requested resource's ``/.default`` scope, so this endpoint
and ``POST /v1/token`` validate and honour the same fields (``claims``
included, when a client sends one).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import trio

from agentid_client.redact import quoted

from ..core.errors import AgentIdError, IdentityProviderError
from ..core.logs import get_logger, log_request
from ..core.metrics import RequestCounter
from ..server.protocol import Headers, Response
from . import protocol as P
from .sessions import IdentitySession, SessionTable

log = get_logger("agentid_daemon.identity_endpoint.endpoint")


class TokenSource(Protocol):
    """What the endpoint needs from :class:`~.api.Api`."""

    def resolve_selection(self, obj: dict[str, Any]) -> Any: ...
    async def token_payload(self, obj: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]: ...


class MIEndpoint:
    """``await endpoint.handle_request(method, target, headers, body) -> Response``."""

    def __init__(
        self, sessions: SessionTable, tokens: TokenSource, metrics: RequestCounter | None = None
    ) -> None:
        self.sessions = sessions
        self.tokens = tokens
        self.metrics = metrics

    async def handle_request(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> Response:
        start = trio.current_time()
        ctx: dict[str, Any] = {}
        try:
            response = await self._handle(method, target, headers, ctx)
        except P.MIRequestError as exc:
            response = _error(exc.status, exc.message)
            ctx.update(error=exc.message)
        except AgentIdError as exc:
            response = _from_agentid_error(exc)
            ctx.update(error=exc.error_code)
            if isinstance(exc, IdentityProviderError):
                ctx.update(leg=exc.leg, correlation_id=exc.correlation_id)
        status = response.status
        if self.metrics is not None:
            # Counted under the endpoint's path, beside the socket API's routes.
            route = P.PATH if target.split("?", 1)[0] == P.PATH else "other"
            self.metrics.observe_request(route, status)
        log_request(
            log,
            "managed identity request",
            method=method,
            path=target.split("?", 1)[0][:200],
            status=status,
            duration_s=trio.current_time() - start,
            ctx=ctx,
            # A refused header or caller is worth a warning on this surface.
            warn_statuses=frozenset({401, 403}),
        )
        return response

    async def _handle(
        self, method: str, target: str, headers: Headers, ctx: dict[str, Any]
    ) -> Response:
        path = target.split("?", 1)[0]
        if path != P.PATH:
            return _error(404, f"no such endpoint; the token endpoint is {P.PATH}")
        if method != "GET":
            return _error(405, f"{method[:16]} is not allowed; only GET", [("allow", "GET")])
        if not P.host_allowed(_header(headers, "host")):
            return _error(403, "the Host header must name loopback (127.0.0.1 or localhost)")
        session = self._session(headers)
        if session is None:
            # Logged as "missing or wrong": never with the value that was sent.
            ctx.update(reason="missing or wrong X-IDENTITY-HEADER")
            return _error(401, "missing or wrong X-IDENTITY-HEADER")
        ctx.update(session=session.label, pid=session.pid)
        query = P.parse_target(target)
        ctx.update(resource=query.resource)
        obj: dict[str, Any] = {**session.fields, "scope": query.scope}
        if query.claims is not None:
            obj["claims"] = query.claims
        req = self.tokens.resolve_selection(obj)
        client_id = req.agent.agent_identity_app_id
        if query.client_id is not None and query.client_id.lower() != client_id.lower():
            raise P.MIRequestError(
                400,
                f"client_id {quoted(query.client_id)} is not this session's agent identity "
                f"({client_id})",
            )
        payload = await self.tokens.token_payload(obj, ctx)
        body = P.token_body(
            access_token=payload["access_token"],
            expires_on=int(payload["expires_on"]),
            resource=query.resource,
            client_id=client_id,
        )
        return Response.json(200, body)

    def _session(self, headers: Headers) -> IdentitySession | None:
        values = [v for k, v in headers if k == P.HEADER_NAME]
        if len(values) != 1:
            return None
        return self.sessions.find(values[0].strip())


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response.json(status, P.error_body(status, message), headers or [])


def _from_agentid_error(exc: AgentIdError) -> Response:
    message = exc.description
    headers: list[tuple[str, str]] = []
    if isinstance(exc, IdentityProviderError):
        if exc.aadsts_codes:
            message += " [" + ", ".join(f"AADSTS{c}" for c in exc.aadsts_codes) + "]"
        if exc.correlation_id:
            message += f" (correlation id {exc.correlation_id})"
        if exc.retry_after_s:
            seconds = min(P.MAX_RETRY_AFTER_S, max(1, math.ceil(exc.retry_after_s)))
            headers.append(("retry-after", str(seconds)))
    if exc.hint:
        message += f"; hint: {exc.hint}"
    # 404 unknown_profile means the session's profile went away in a reload:
    # for this client that is the server's problem, not a missing path.
    status = 500 if exc.http_status == 404 else exc.http_status
    return _error(status, message, headers)
