"""The sidecar API's requests, sans-IO: routes, query binding, overrides -> a token selection.

Follows AzureAD/microsoft-identity-web ``src/Microsoft.Identity.Web.Sidecar``:

- routes (Program.cs, Endpoints/*.cs): ``GET /AuthorizationHeader/{apiName}``,
  ``GET /AuthorizationHeaderUnauthenticated/{apiName}``,
  ``POST /DownstreamApi/{apiName}``, ``POST /DownstreamApiUnauthenticated/{apiName}``,
  ``GET /Validate``, ``GET /healthz``; ASP.NET routing ignores the case of
  literal segments, and so does this module;
- query parameters ``AgentIdentity``, ``AgentUsername``, ``AgentUserId``
  (Models/AuthorizationHeaderRequest.cs, bound case-insensitively) and the
  ``optionsOverride.*`` keys of Models/BindableDownstreamApiOptions.cs
  (``Scopes`` repeated, ``RequestAppToken``, ``AcquireTokenOptions.Tenant|
  ForceRefresh|Claims|CorrelationId``, ``RelativePath``, ``HttpMethod``,
  ``ContentType``, ``AcceptHeader``; ``BaseUrl`` is always ignored);
- the per-route gates of Configuration/SidecarOptions.cs (``AllowOverrides``),
  which also gate the agent parameters (AgentOverrides.cs, 1.1.0 #3871);
- the merge of DownstreamApiOptionsMerger.cs (an override replaces the
  configured value; ``RequestAppToken`` can only be switched on).

Where this daemon answers differently (docs/api.md, "Where this sidecar
differs"): an override or an agent parameter that its route does not allow is
refused with 400 instead of ignored with a warning in the log (ignoring it
would hand out a token of another identity or scope than the app asked for);
``AgentUsername`` with ``AgentUserId`` is refused with 400 as the docs say
(learn.microsoft.com/entra/msidweb/agent-id-sdk/agent-identities, "Rule 2:
mutual exclusivity"), where AgentOverrides.cs lets the UPN win; an
``optionsOverride`` key this daemon does not honour is refused, not skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from agentid_client.redact import quoted

from ..config import fields as F
from ..config.sidecar_env import DownstreamApi, http_method
from ..core.models import Mode
from .problems import Problem

OVERRIDE_PREFIX = "optionsoverride."
# optionsOverride keys honoured here (lower case) -> their spelling in the docs.
_OVERRIDES = {
    "scopes": "Scopes",
    "requestapptoken": "RequestAppToken",
    "acquiretokenoptions.tenant": "AcquireTokenOptions.Tenant",
    "acquiretokenoptions.forcerefresh": "AcquireTokenOptions.ForceRefresh",
    "acquiretokenoptions.claims": "AcquireTokenOptions.Claims",
    "acquiretokenoptions.correlationid": "AcquireTokenOptions.CorrelationId",
    "relativepath": "RelativePath",
    "httpmethod": "HttpMethod",
    "contenttype": "ContentType",
    "acceptheader": "AcceptHeader",
    "baseurl": "BaseUrl",  # bound, then always ignored (BindableDownstreamApiOptions.cs)
}
_AGENT_PARAMS = {"agentidentity": "AgentIdentity", "agentusername": "AgentUsername",
                 "agentuserid": "AgentUserId"}  # fmt: skip


@dataclass(frozen=True)
class Route:
    """Which endpoint a request is for."""

    name: str  # AuthorizationHeader, DownstreamApi, ... (the sidecar's route names)
    method: str
    authenticated: bool
    allow_key: str | None  # Sidecar__AllowOverrides__<allow_key>
    api_name: str | None = None


_API_ROUTES: dict[str, tuple[str, bool, str]] = {
    # lower-case path segment -> (method, authenticated, AllowOverrides key)
    "authorizationheader": ("GET", True, "GetAuthorizationHeader"),
    "authorizationheaderunauthenticated": ("GET", False, "GetAuthorizationHeaderUnauthenticated"),
    "downstreamapi": ("POST", True, "CallDownstreamApi"),
    "downstreamapiunauthenticated": ("POST", False, "CallDownstreamApiUnauthenticated"),
}
_ROUTE_NAMES = {
    "authorizationheader": "AuthorizationHeader",
    "authorizationheaderunauthenticated": "AuthorizationHeaderUnauthenticated",
    "downstreamapi": "DownstreamApi",
    "downstreamapiunauthenticated": "DownstreamApiUnauthenticated",
}


def route_of(method: str, target: str) -> Route:
    """The route of *target* (Problem 404/405 when there is none)."""
    path = urlsplit(target).path
    segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
    lowered = [s.lower() for s in segments]
    if lowered == ["healthz"]:
        route = Route("healthz", "GET", False, None)
    elif lowered == ["validate"]:
        route = Route("Validate", "GET", True, None)
    elif len(segments) == 2 and lowered[0] in _API_ROUTES and segments[1]:
        want, authenticated, allow_key = _API_ROUTES[lowered[0]]
        route = Route(_ROUTE_NAMES[lowered[0]], want, authenticated, allow_key, segments[1])
    else:
        raise Problem(
            404,
            f"no such endpoint: {quoted(path[:200])}; this sidecar serves "
            "/AuthorizationHeader[Unauthenticated]/{apiName}, "
            "/DownstreamApi[Unauthenticated]/{apiName}, /Validate and /healthz",
        )
    served = (route.method, "HEAD") if route.method == "GET" else (route.method,)
    if method not in served:
        raise Problem(
            405,
            f"{method[:16]} is not allowed on /{route.name}; use {route.method}",
            [("allow", route.method)],
        )
    return route


@dataclass(frozen=True)
class AgentParams:
    """``AgentIdentity``, ``AgentUsername``, ``AgentUserId`` as sent (None: absent)."""

    agent_identity: str | None = None
    agent_username: str | None = None
    agent_user_id: str | None = None

    @property
    def given(self) -> list[str]:
        names = ("AgentIdentity", "AgentUsername", "AgentUserId")
        values = (self.agent_identity, self.agent_username, self.agent_user_id)
        return [n for n, v in zip(names, values, strict=True) if v is not None]


@dataclass(frozen=True)
class Overrides:
    """The ``optionsOverride.*`` keys of one request (None: not given)."""

    scopes: tuple[str, ...] = ()
    request_app_token: bool | None = None
    tenant: str | None = None
    force_refresh: bool | None = None
    claims: str | None = None
    correlation_id: str | None = None
    relative_path: str | None = None
    http_method: str | None = None
    content_type: str | None = None
    accept_header: str | None = None
    # Keys given other than BaseUrl (which is always ignored): BindableDownstreamApiOptions.HasAny.
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    agent: AgentParams
    overrides: Overrides


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise Problem(400, f"optionsOverride.{name} must be true or false, not {quoted(value)}")


def parse_query(target: str) -> Query:
    """Bind the query string of *target* (Problem 400 for what cannot be honoured)."""
    agent: dict[str, str] = {}
    scopes: list[str] = []
    single: dict[str, str] = {}
    given: list[str] = []
    for key, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        lowered = key.lower()
        if lowered in _AGENT_PARAMS:
            # ASP.NET binds the first value of a repeated scalar; a blank one is absent.
            if value.strip():
                agent.setdefault(_AGENT_PARAMS[lowered], value.strip())
            continue
        if not lowered.startswith(OVERRIDE_PREFIX):
            continue  # like ASP.NET: query parameters no one binds are ignored
        sub = lowered[len(OVERRIDE_PREFIX) :]
        name = _OVERRIDES.get(sub)
        if name is None:
            raise Problem(
                400,
                f"{quoted(key[:100])} is not supported by this sidecar; it honours "
                + ", ".join(f"optionsOverride.{n}" for n in _OVERRIDES.values()),
            )
        if name == "BaseUrl":
            continue  # never overridable: the configured BaseUrl is the only one
        if name not in given:
            given.append(name)
        if name == "Scopes":
            scopes.extend(s for s in value.split() if s)
        elif value.strip():
            single[name] = value.strip()  # the last value wins, as values.LastOrDefault()
    correlation = single.get("AcquireTokenOptions.CorrelationId")
    if correlation is not None:
        try:
            correlation = str(uuid.UUID(correlation))
        except ValueError:
            raise Problem(
                400, "optionsOverride.AcquireTokenOptions.CorrelationId must be a GUID"
            ) from None
    method = single.get("HttpMethod")
    if method is not None:
        try:
            method = http_method(method)
        except ValueError as exc:
            raise Problem(400, f"optionsOverride.{exc}") from None
    overrides = Overrides(
        scopes=tuple(scopes),
        request_app_token=(
            _bool("RequestAppToken", single["RequestAppToken"])
            if "RequestAppToken" in single
            else None
        ),
        tenant=single.get("AcquireTokenOptions.Tenant"),
        force_refresh=(
            _bool("AcquireTokenOptions.ForceRefresh", single["AcquireTokenOptions.ForceRefresh"])
            if "AcquireTokenOptions.ForceRefresh" in single
            else None
        ),
        claims=single.get("AcquireTokenOptions.Claims"),
        correlation_id=correlation,
        relative_path=single.get("RelativePath"),
        http_method=method,
        content_type=single.get("ContentType"),
        accept_header=single.get("AcceptHeader"),
        given=tuple(given),
    )
    return Query(
        AgentParams(
            agent.get("AgentIdentity"), agent.get("AgentUsername"), agent.get("AgentUserId")
        ),
        overrides,
    )


@dataclass(frozen=True)
class Call:
    """A downstream API's options after the request's overrides (DownstreamApiOptionsMerger)."""

    api: DownstreamApi
    scopes: tuple[str, ...]
    request_app_token: bool
    relative_path: str
    http_method: str
    content_type: str
    accept_header: str


def merged(
    route: Route, api: DownstreamApi | None, query: Query, allowed: bool
) -> tuple[Call, dict[str, Any]]:
    """The call's options and the token selection fields for ``Api.token_payload``.

    The checks run in the order of AuthorizationHeaderEndpoint.cs: the API
    must be configured, overrides must be allowed, scopes must remain.
    """
    assert route.api_name is not None and route.allow_key is not None
    if api is None:
        # AuthorizationHeaderEndpoint.cs's wording.
        raise Problem(400, f"Not able to resolve '{route.api_name}'.")
    o = query.overrides
    gate = f"Sidecar__AllowOverrides__{route.allow_key}"
    if o.given and not allowed:
        raise Problem(
            400,
            "optionsOverride."
            + ", optionsOverride.".join(o.given)
            + f" is not allowed on /{route.name}: {gate} is false"
            + (" (its default)" if not route.authenticated else ""),
        )
    scopes = (o.scopes or api.scopes) if allowed else api.scopes
    if not scopes:
        raise Problem(
            400,
            f"No scopes found for the API '{route.api_name}' or in optionsOverride. "
            "'scopes' needs to be either a single value or a list of values.",
        )
    call = Call(
        api=api,
        scopes=scopes,
        request_app_token=api.request_app_token or bool(o.request_app_token),
        relative_path=o.relative_path if o.relative_path is not None else api.relative_path,
        http_method=o.http_method or api.http_method,
        content_type=o.content_type or api.content_type,
        accept_header=o.accept_header or api.accept_header,
    )
    return call, _selection(route, call, query, allowed, gate)


def _selection(route: Route, call: Call, query: Query, allowed: bool, gate: str) -> dict[str, Any]:
    agent = query.agent
    if agent.given and not allowed:
        raise Problem(
            400,
            ", ".join(agent.given)
            + f" is not allowed on /{route.name}: {gate} is false"
            + (" (its default)" if not route.authenticated else ""),
        )
    # The sidecar's own query rule in its own names (a 400 problem): config.resolve
    # judges the fields made below by the same rule (TokenRequest.mode_problem),
    # but would word it in field names (user_upn, user_object_id) never sent here.
    if agent.agent_username is not None and agent.agent_user_id is not None:
        raise Problem(400, "AgentUsername and AgentUserId are mutually exclusive: give one of them")
    user = agent.agent_username is not None or agent.agent_user_id is not None
    if user and agent.agent_identity is None:
        raise Problem(400, f"{agent.given[0]} needs AgentIdentity (the agent whose user it is)")
    fields: dict[str, Any] = {"scope": list(call.scopes)}
    if agent.agent_identity is not None:
        fields["agent_identity_app_id"] = _checked("AgentIdentity", F.guid, agent.agent_identity)
    if agent.agent_username is not None:
        fields["mode"] = Mode.AUTONOMOUS_USER.value
        fields["user_upn"] = _checked("AgentUsername", F.upn, agent.agent_username)
    elif agent.agent_user_id is not None:
        fields["mode"] = Mode.AUTONOMOUS_USER.value
        fields["user_object_id"] = _checked("AgentUserId", F.guid, agent.agent_user_id)
    elif route.authenticated and not call.request_app_token:
        fields["mode"] = Mode.OBO.value  # the caller's bearer is added by the endpoint
    else:
        fields["mode"] = Mode.AUTONOMOUS_APP.value
    o = query.overrides
    if allowed:
        if o.tenant is not None:
            fields["tenant_id"] = _checked("optionsOverride.AcquireTokenOptions.Tenant",
                                           F.tenant, o.tenant)  # fmt: skip
        if o.force_refresh:
            fields["force_refresh"] = True
        if o.claims is not None:
            fields["claims"] = o.claims
    return fields


def _checked(name: str, check: Any, value: str) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise Problem(400, f"{name}: {exc}") from None
