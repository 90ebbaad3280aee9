"""The sidecar API's request handler: Microsoft's Agent ID sidecar routes over the broker.

Routes, bindings and answers follow AzureAD/microsoft-identity-web
``src/Microsoft.Identity.Web.Sidecar`` (Endpoints/AuthorizationHeaderEndpoint.cs,
Endpoints/DownstreamApiEndpoint.cs, Endpoints/ValidateRequestEndpoints.cs,
Program.cs's ``/healthz``; :mod:`.binding` has the details). Tokens come from
:meth:`Api.token_payload`, the same path as ``POST /v1/token``: one cache,
single-flight, refresh ahead, for every surface. Modes:

- ``AgentUsername`` / ``AgentUserId`` -> ``AutonomousUser`` (the agent's user);
- the authenticated routes, unless ``RequestAppToken`` -> ``OBO`` with the
  caller's validated bearer token as the user token;
- otherwise -> ``AutonomousApp``.

:class:`~agentid_daemon.server.protocol.HttpServer` has already refused
``Origin``/``Referer`` and, through
:class:`~agentid_daemon.server.loopback_peers.LoopbackAdmission`, other uids;
this handler also refuses a ``Host`` that does not name loopback (the
sidecar's ``AllowedHosts`` is ``localhost``: its README.md). Successful
answers carry ``Cache-Control: no-store`` (CacheControl.cs also sends
``no-cache, must-revalidate``, ``Pragma`` and ``Expires``: so do we). Tokens
never reach a log line: only the route, the API name and the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import trio

from ..config.loader import Config
from ..config.sidecar_env import PROFILE_NAME
from ..core.errors import AgentIdError, IdentityProviderError
from ..core.logs import get_logger, log_request
from ..core.metrics import RequestCounter
from ..core.models import DEFAULT_AUTHORITY_HOST, Mode
from ..server.loopback_peers import host_allowed
from ..server.protocol import Headers, Response
from .binding import Route, merged, parse_query, route_of
from .downstream import Downstream, outbound
from .problems import Problem, problem_response
from .validation import Authority, TokenValidator, bearer_of

log = get_logger("agentid_daemon.sidecar_api.endpoint")

# CacheControl.cs: what the sidecar adds to every 2xx answer.
NO_CACHING = [
    ("cache-control", "no-cache, no-store, must-revalidate"),
    ("expires", "0"),
    ("pragma", "no-cache"),
]
MAX_RETRY_AFTER_S = 300
# Blocking work (JWKS, the downstream call) at once; the rest waits.
WORKER_THREADS = 8


class TokenSource(Protocol):
    """What the endpoint needs from :class:`~agentid_daemon.api.routes.Api`."""

    async def token_payload(self, obj: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]: ...


class SidecarEndpoint:
    """``await endpoint.handle_request(method, target, headers, body) -> Response``."""

    def __init__(
        self,
        tokens: TokenSource,
        config: Callable[[], Config | None],
        metrics: RequestCounter | None = None,
        *,
        validator: TokenValidator | None = None,
        downstream: Downstream | None = None,
    ) -> None:
        self.tokens = tokens
        self.config = config
        self.metrics = metrics
        self.validator = validator or TokenValidator()
        self.downstream = downstream or Downstream()
        self._limiter = trio.CapacityLimiter(WORKER_THREADS)

    async def handle_request(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> Response:
        start = trio.current_time()
        ctx: dict[str, Any] = {}
        name = "other"
        try:
            route = route_of(method, target)
            name = route.name
            if route.api_name is not None:
                ctx.update(api=route.api_name[:64])
            response = await self._handle(route, target, headers, body, ctx)
        except Problem as exc:
            response = problem_response(exc)
            ctx.update(error=exc.detail[:300])
        except AgentIdError as exc:
            response = problem_response(_from_agentid_error(exc))
            ctx.update(error=exc.error_code)
            if isinstance(exc, IdentityProviderError):
                ctx.update(leg=exc.leg, correlation_id=exc.correlation_id)
        status = response.status
        if self.metrics is not None:
            self.metrics.observe_request(f"sidecar:{name}", status)
        if name != "healthz" or status >= 400:
            log_request(
                log,
                "sidecar API request",
                method=method,
                path=target.split("?", 1)[0][:200],
                status=status,
                duration_s=trio.current_time() - start,
                ctx=ctx,
                warn_statuses=frozenset({401, 403}),
            )
        return response

    async def _handle(
        self, route: Route, target: str, headers: Headers, body: bytes, ctx: dict[str, Any]
    ) -> Response:
        if route.name == "healthz":
            # ASP.NET's MapHealthChecks answers text/plain "Healthy".
            return Response.text(200, "Healthy")
        if not host_allowed(_header(headers, "host")):
            raise Problem(403, "the Host header must name loopback (localhost or 127.0.0.1)")
        config = self.config()
        if config is None:
            raise Problem(500, "the daemon has no usable configuration")
        user_token: str | None = None
        claims: dict[str, Any] | None = None
        if route.authenticated:
            user_token = bearer_of(headers)
            authority = _authority(config)
            claims = await self._blocking(self.validator.validate, user_token, authority)
        if route.name == "Validate":
            assert claims is not None and user_token is not None
            TokenValidator.check_scopes(claims, config.sidecar.required_scopes)
            return _ok({"protocol": "Bearer", "token": user_token, "claims": claims})
        assert route.allow_key is not None and route.api_name is not None
        query = parse_query(target)
        allowed = config.sidecar.allow_overrides[route.allow_key]
        api = config.sidecar.downstream_apis.get(route.api_name)
        call, fields = merged(route, api, query, allowed)
        if query.overrides.correlation_id and allowed:
            ctx.update(client_correlation_id=query.overrides.correlation_id)
        profile = _profile_name(config)
        if profile is not None:
            fields["profile"] = profile
        if fields["mode"] == Mode.OBO.value:
            fields["user_token"] = user_token
        if "agent_identity_app_id" not in fields and not _has_agent(config, profile):
            raise Problem(
                400,
                "AgentIdentity is required: give ?AgentIdentity=<agent identity app id> "
                "(this sidecar serves agent identities, not the blueprint's own tokens)",
            )
        payload = await self.tokens.token_payload(fields, ctx)
        token = str(payload["access_token"])
        if route.name.startswith("AuthorizationHeader"):
            return _ok({"authorizationHeader": f"Bearer {token}"})
        request = outbound(call, body, _header(headers, "content-type"))
        ca_bundle = config.layered(config.profiles[profile]).get("ca_bundle") if profile else None
        result = await self._blocking(self.downstream.send, request, token, ca_bundle)
        ctx.update(downstream_status=result["statusCode"])
        return _ok(result)

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(
            fn, *args, limiter=self._limiter, abandon_on_cancel=True
        )


def _ok(obj: Any) -> Response:
    return Response.json(200, obj, NO_CACHING)


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _profile_name(config: Config) -> str | None:
    """The sidecar's profile: the one its ``AzureAd__*`` variables made, else the default."""
    if config.sidecar.profile is not None:
        return PROFILE_NAME
    return config.default_profile


def _has_agent(config: Config, profile: str | None) -> bool:
    base = config.profiles.get(profile) if profile else None
    layered = config.layered(base) if base is not None else config.layered(config.defaults)
    return "agent_identity_app_id" in layered


def _authority(config: Config) -> Authority:
    """Whose tokens the authenticated routes accept: the sidecar profile's tenant."""
    profile = _profile_name(config)
    if profile is None or profile not in config.profiles:
        raise Problem(
            500, "no profile to validate tokens against: set AzureAd__TenantId and "
            "AzureAd__ClientId, or default_profile in config.toml"
        )  # fmt: skip
    values = config.layered(config.profiles[profile])
    missing = [k for k in ("tenant_id", "blueprint_app_id") if k not in values]
    if missing:
        raise Problem(
            500, f"profile {profile!r} has no {' or '.join(missing)} to validate tokens against"
        )
    return Authority(
        authority_host=values.get("authority_host", DEFAULT_AUTHORITY_HOST),
        tenant_id=values["tenant_id"],
        client_id=values["blueprint_app_id"],
        ca_bundle=values.get("ca_bundle"),
        audience=config.sidecar.audience,
        required_scopes=config.sidecar.required_scopes,
    )


def _from_agentid_error(exc: AgentIdError) -> Problem:
    """The sidecar's status for a failed acquisition (AuthorizationHeaderEndpoint.cs).

    The identity provider's refusal (an ``MsalServiceException`` there) is
    401 with its message; a request this daemon refuses is 400; Entra
    unreachable or throttling is 503 with ``Retry-After`` (the sidecar folds
    it into 401 or 500); anything else is 500.
    """
    detail = exc.description
    headers: list[tuple[str, str]] = []
    status = 500
    if isinstance(exc, IdentityProviderError):
        if exc.aadsts_codes:
            detail += " [" + ", ".join(f"AADSTS{c}" for c in exc.aadsts_codes) + "]"
        if exc.correlation_id:
            detail += f" (correlation id {exc.correlation_id})"
        status = 503 if exc.http_status == 503 else 401
        if exc.retry_after_s:
            seconds = min(MAX_RETRY_AFTER_S, max(1, math.ceil(exc.retry_after_s)))
            headers.append(("retry-after", str(seconds)))
    elif exc.http_status == 400:
        status = 400
    if exc.hint:
        detail += f"; hint: {exc.hint}"
    return Problem(status, detail, headers)
