"""Microsoft Graph beta for provisioning agent identities: requests and their errors.

Each call is a :class:`GraphRequest` (method, path under ``/beta``, JSON body,
query) built by one function named after what it does, sent by
:class:`GraphClient` over HTTPS to the profile's Graph endpoint with
``OData-Version: 4.0`` and a bearer token the caller brings (the blueprint's
own app token, see :mod:`.blueprint`, or an administrator's for ``init``).
A refusal becomes one :class:`GraphRequestError` line: Graph's error code, its
message, the request id and a hint; never a token or a header value.

The calls follow Microsoft's documents:

- MicrosoftDocs/entra-docs ``docs/agent-id/identity-platform/create-blueprint.md``:
  ``POST /beta/applications`` with ``@odata.type``
  ``Microsoft.Graph.AgentIdentityBlueprint``; ``POST
  /beta/serviceprincipals/graph.agentIdentityBlueprintPrincipal`` with the
  ``appId``; ``POST /beta/applications/{id}/addPassword``; ``POST
  /beta/applications/{id}/federatedIdentityCredentials``; ``PATCH
  /beta/applications/{id}`` with ``keyCredentials`` for a certificate.
- ``create-delete-agent-identities.md``: ``POST
  /beta/serviceprincipals/Microsoft.Graph.AgentIdentity`` with ``displayName``,
  ``agentIdentityBlueprintId`` and ``sponsors@odata.bind``, header
  ``OData-Version: 4.0``; ``DELETE /beta/serviceprincipals/{id}``.
- ``agent-users.md``: ``POST /beta/users`` with ``@odata.type``
  ``microsoft.graph.agentUser``, ``identityParentId`` (the agent identity's
  object id), ``userPrincipalName``, ``mailNickname``, ``accountEnabled``.
- microsoftgraph/microsoft-graph-docs-contrib ``api-reference/beta/api/``
  ``agentidentity-post.md``, ``agentidentity-list.md``, ``agentuser-post.md``,
  ``user-delete.md``, and the error shape of ``/graph/errors``
  (``{"error": {"code", "message", "innerError": {"request-id", "date",
  "client-request-id"}}}``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..core.errors import IdentityProviderError, InvalidRequest
from ..core.models import DEFAULT_AUTHORITY_HOST

if TYPE_CHECKING:
    # requests and idp.results (MSAL's exceptions) are imported where a Graph
    # call is made: every daemon builds the provisioning service at start, and
    # a daemon started for a waiting client reaches its socket without them
    # (process/engine_host.py).
    import requests

#: Microsoft Graph per cloud, keyed by the cloud's authority host (Microsoft
#: Graph "National cloud deployments": graph.microsoft.us, dod-graph.microsoft.us,
#: microsoftgraph.chinacloudapi.cn).
GRAPH_BY_AUTHORITY: dict[str, str] = {
    "https://login.microsoftonline.com": "https://graph.microsoft.com",
    "https://login.microsoftonline.us": "https://graph.microsoft.us",
    "https://login.chinacloudapi.cn": "https://microsoftgraph.chinacloudapi.cn",
}
DEFAULT_GRAPH = "https://graph.microsoft.com"
API_VERSION = "beta"
#: Graph's longest displayName of a service principal / user (the emulator's too).
MAX_DISPLAY_NAME = 256
#: Graph's own limit of ``mailNickname`` (user resource: "maximum length is 64").
MAX_MAIL_NICKNAME = 64

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UPN = re.compile(r"^[^@\s/\\'\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
_NICKNAME_BAD = re.compile(r"[^A-Za-z0-9._-]")


def graph_resource(authority_host: str | None) -> str:
    """The Graph resource (token audience) of the cloud of ``authority_host``.

    An authority host of no known cloud (a test authority such as the
    emulator) is treated as the public cloud: its tokens name
    ``https://graph.microsoft.com``."""
    host = (authority_host or DEFAULT_AUTHORITY_HOST).rstrip("/").lower()
    return GRAPH_BY_AUTHORITY.get(host, DEFAULT_GRAPH)


def graph_scope(authority_host: str | None) -> str:
    """``{graph}/.default``: what a blueprint's client-credentials request asks for
    (create-delete-agent-identities.md, "Get an access token")."""
    return f"{graph_resource(authority_host)}/.default"


def is_guid(text: object) -> bool:
    return isinstance(text, str) and bool(_GUID.match(text))


def check_guid(value: object, what: str) -> str:
    """``value`` lower-cased if it is a GUID, else :class:`InvalidRequest` (exit 2)."""
    if not is_guid(value):
        raise InvalidRequest(f"{what} must be a GUID, got {_shown(value)}")
    return str(value).lower()


def check_display_name(value: object, what: str = "display_name") -> str:
    """A non-empty name of at most :data:`MAX_DISPLAY_NAME` characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{what} must be a non-empty string")
    if len(value) > MAX_DISPLAY_NAME:
        raise InvalidRequest(
            f"{what} is {len(value)} characters long; Microsoft Graph takes at most "
            f"{MAX_DISPLAY_NAME}"
        )
    return value.strip()


def check_upn(value: object) -> str:
    """``alias@domain`` (the tenant's domains are Graph's to check)."""
    if not isinstance(value, str) or not _UPN.match(value.strip()):
        raise InvalidRequest(f"upn must look like alias@domain, got {_shown(value)}")
    return value.strip()


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return json.dumps(text[:80])


@dataclass(frozen=True)
class GraphRequest:
    """One Graph call, before it is sent (tests and ``init`` read these)."""

    method: str
    path: str  # under /beta, starting with "/"
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- agent identities


def sponsor_bind(sponsor: str, resource: str = DEFAULT_GRAPH) -> str:
    """``{graph}/v1.0/users/{id or UPN}``: one ``sponsors@odata.bind`` entry
    (create-delete-agent-identities.md uses the v1.0 users URL)."""
    text = sponsor.strip()
    key = text.lower() if is_guid(text) else quote(check_upn(text), safe="@.")
    return f"{resource}/v1.0/users/{key}"


def create_agent_identity_request(
    blueprint_app_id: str,
    display_name: str,
    sponsors: tuple[str, ...],
    *,
    resource: str = DEFAULT_GRAPH,
) -> GraphRequest:
    """``POST /serviceprincipals/Microsoft.Graph.AgentIdentity``
    (create-delete-agent-identities.md; Graph beta agentidentity-post.md)."""
    if not sponsors:
        raise InvalidRequest(
            "an agent identity needs at least one sponsor: a user's object id or UPN"
        )
    return GraphRequest(
        "POST",
        "/serviceprincipals/Microsoft.Graph.AgentIdentity",
        {
            "displayName": check_display_name(display_name),
            "agentIdentityBlueprintId": check_guid(blueprint_app_id, "blueprint_app_id"),
            "sponsors@odata.bind": [sponsor_bind(s, resource) for s in sponsors],
        },
    )


def list_agent_identities_request(blueprint_app_id: str) -> GraphRequest:
    """``GET /serviceprincipals/Microsoft.Graph.AgentIdentity?$filter=
    agentIdentityBlueprintId eq '{app id}'`` (Graph beta agentidentity-list.md)."""
    app_id = check_guid(blueprint_app_id, "blueprint_app_id")
    return GraphRequest(
        "GET",
        "/serviceprincipals/Microsoft.Graph.AgentIdentity",
        params={"$filter": f"agentIdentityBlueprintId eq '{app_id}'"},
    )


def delete_service_principal_request(object_id: str) -> GraphRequest:
    """``DELETE /serviceprincipals/{id}``: an agent identity (or a blueprint
    principal) by object id (create-delete-agent-identities.md)."""
    return GraphRequest("DELETE", f"/serviceprincipals/{check_guid(object_id, 'object id')}")


# ---------------------------------------------------------------- agent users


def mail_nickname(upn: str) -> str:
    """The alias of ``upn`` as ``mailNickname`` takes it (letters, digits, ``._-``)."""
    alias = _NICKNAME_BAD.sub("", upn.partition("@")[0])[:MAX_MAIL_NICKNAME]
    if not alias:
        raise InvalidRequest(f"the UPN {_shown(upn)} has no usable alias before '@'")
    return alias


def create_agent_user_request(
    agent_identity_object_id: str, upn: str, display_name: str | None = None
) -> GraphRequest:
    """``POST /users`` with ``@odata.type: microsoft.graph.agentUser`` (agent-users.md,
    Graph beta agentuser-post.md): no password, ``identityParentId`` = the agent
    identity's object id."""
    checked = check_upn(upn)
    return GraphRequest(
        "POST",
        "/users",
        {
            "@odata.type": "microsoft.graph.agentUser",
            "displayName": check_display_name(display_name or checked, "display name"),
            "userPrincipalName": checked,
            "mailNickname": mail_nickname(checked),
            "accountEnabled": True,
            "identityParentId": check_guid(agent_identity_object_id, "agent identity object id"),
        },
    )


def delete_user_request(user: str) -> GraphRequest:
    """``DELETE /users/{id | userPrincipalName}`` (Graph beta user-delete.md)."""
    key = check_guid(user, "user") if is_guid(user) else check_upn(user)
    return GraphRequest("DELETE", f"/users/{quote(key, safe='@.')}")


# ---------------------------------------------------------------- blueprints (init)


def create_blueprint_request(
    display_name: str,
    sponsors: tuple[str, ...] = (),
    owners: tuple[str, ...] = (),
    *,
    resource: str = DEFAULT_GRAPH,
) -> GraphRequest:
    """``POST /applications`` with ``@odata.type: Microsoft.Graph.AgentIdentityBlueprint``
    (create-blueprint.md)."""
    body: dict[str, Any] = {
        "@odata.type": "Microsoft.Graph.AgentIdentityBlueprint",
        "displayName": check_display_name(display_name),
    }
    if sponsors:
        body["sponsors@odata.bind"] = [sponsor_bind(s, resource) for s in sponsors]
    if owners:
        body["owners@odata.bind"] = [sponsor_bind(s, resource) for s in owners]
    return GraphRequest("POST", "/applications", body)


def create_blueprint_principal_request(blueprint_app_id: str) -> GraphRequest:
    """``POST /serviceprincipals/graph.agentIdentityBlueprintPrincipal`` {appId}
    (create-blueprint.md; Graph beta agentidentityblueprintprincipal-post.md)."""
    return GraphRequest(
        "POST",
        "/serviceprincipals/graph.agentIdentityBlueprintPrincipal",
        {"appId": check_guid(blueprint_app_id, "blueprint_app_id")},
    )


def add_password_request(
    blueprint_object_id: str, display_name: str, end_date_time: str | None = None
) -> GraphRequest:
    """``POST /applications/{id}/addPassword`` (create-blueprint.md; the secret is in
    the reply's ``secretText``: store it, never print it)."""
    credential: dict[str, Any] = {"displayName": check_display_name(display_name)}
    if end_date_time is not None:
        credential["endDateTime"] = end_date_time
    return GraphRequest(
        "POST",
        f"/applications/{check_guid(blueprint_object_id, 'blueprint object id')}/addPassword",
        {"passwordCredential": credential},
    )


def add_federated_credential_request(
    blueprint_object_id: str,
    name: str,
    issuer: str,
    subject: str,
    audiences: tuple[str, ...] = ("api://AzureADTokenExchange",),
) -> GraphRequest:
    """``POST /applications/{id}/federatedIdentityCredentials`` (create-blueprint.md:
    a managed identity as the blueprint's credential)."""
    oid = check_guid(blueprint_object_id, "blueprint object id")
    return GraphRequest(
        "POST",
        f"/applications/{oid}/federatedIdentityCredentials",
        {"name": name, "issuer": issuer, "subject": subject, "audiences": list(audiences)},
    )


def set_key_credentials_request(
    blueprint_object_id: str, key_credentials: list[dict[str, Any]]
) -> GraphRequest:
    """``PATCH /applications/{id}`` with ``keyCredentials`` (create-blueprint.md:
    a certificate credential; the list replaces the existing one)."""
    oid = check_guid(blueprint_object_id, "blueprint object id")
    return GraphRequest("PATCH", f"/applications/{oid}", {"keyCredentials": key_credentials})


# ---------------------------------------------------------------- errors


class GraphRequestError(IdentityProviderError):
    """Microsoft Graph refused (or could not be reached for) a call: exit code 4.

    ``graph_code`` is Graph's OData error code (``Authorization_RequestDenied``,
    ``Request_ResourceNotFound``...), ``request_id`` Graph's request id (from
    the ``request-id`` header or the error's ``innerError``), carried as the
    error's correlation id.
    """

    def __init__(
        self,
        description: str,
        *,
        graph_code: str | None = None,
        request_id: str | None = None,
        status: int | None = None,
        transient: bool = False,
        hint: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            description,
            transient=transient,
            correlation_id=request_id,
            hint=hint,
            retry_after_s=retry_after_s,
            leg="graph",
            status=status,
        )
        self.graph_code = graph_code
        self.request_id = request_id
        if status == 400:
            # Graph's "bad request" is about the input (a UPN of a domain the
            # tenant does not have, a sponsor that does not exist...): exit code 2.
            self.http_status = 400
            self.error_code = "invalid_request"


#: One-line hints per Graph error code: what to check or grant next.
GRAPH_HINTS: dict[str, str] = {
    "Authorization_RequestDenied": "the token lacks a permission or role this call needs: a "
    "blueprint's own token carries AgentIdentity.CreateAsManager (its own agent "
    "identities only); other calls need an administrator to grant and consent the "
    "permission Graph names, or a directory role (Agent ID Administrator)",
    "InvalidAuthenticationToken": "Graph refused the token: check graph_endpoint and that "
    "authority_host and tenant_id are of the same cloud and tenant",
    "Request_ResourceNotFound": "the object does not exist in this tenant (or was created "
    "moments ago and has not replicated yet): check the ids, UPNs and sponsors",
    "Request_ObjectConflict": "an object with these values already exists",
    "Request_QuotaExceeded": "the blueprint has as many agent identities as it may: delete "
    "unused ones ('agentid-helper agent list' / 'agent delete')",
    "Authorization_IdentityNotFound": "the blueprint has no service principal in this "
    "tenant: create its blueprint principal (create-blueprint.md)",
}


def _request_id(response: requests.Response, error: Mapping[str, Any]) -> str | None:
    headers = {k.lower(): v for k, v in response.headers.items()}
    inner = error.get("innerError") or error.get("innererror")
    inner_id = None
    if isinstance(inner, Mapping):
        inner_id = inner.get("request-id") or inner.get("client-request-id")
    found = headers.get("request-id") or inner_id or headers.get("client-request-id")
    return str(found) if found else None


def graph_error(what: str, response: requests.Response) -> GraphRequestError:
    """One line from Graph's OData error reply: ``what``, HTTP status, code, message."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    request_id = _request_id(response, error)
    text = f"Microsoft Graph refused to {what}: HTTP {status}"
    if code:
        text += f" {code}"
    if message:
        text += f": {' '.join(message.split())[:500]}"
    if request_id:
        text += f" (request id {request_id})"
    transient = status == 429 or status >= 500
    from ..idp.results import parse_retry_after

    return GraphRequestError(
        text,
        graph_code=code,
        request_id=request_id,
        status=status,
        transient=transient,
        hint=GRAPH_HINTS.get(code or ""),
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
    )


# ---------------------------------------------------------------- the client


class GraphClient:
    """Sends :class:`GraphRequest` values to one Graph endpoint (sync: run it in a
    worker thread). ``session`` carries the profile's trust (ca_bundle): the
    idp engine's :meth:`~agentid_daemon.idp.engine.Engine.provider_session`."""

    def __init__(self, session: requests.Session, endpoint: str) -> None:
        self._session = session
        self.endpoint = endpoint.rstrip("/")

    def call(self, request: GraphRequest, token: str, *, what: str) -> dict[str, Any] | None:
        """The reply's JSON object (None for 204), or :class:`GraphRequestError`."""
        import requests

        from ..idp.results import network_reason

        url = f"{self.endpoint}/{API_VERSION}{request.path}"
        headers = {
            "Authorization": f"Bearer {token}",
            "OData-Version": "4.0",
            "Accept": "application/json",
            # Sent so Graph's logs and ours can be matched (Graph echoes it).
            "client-request-id": str(uuid.uuid4()),
        }
        try:
            response = self._session.request(
                request.method,
                url,
                json=dict(request.body) if request.body is not None else None,
                params=dict(request.params) or None,
                headers=headers,
            )
        except requests.RequestException as exc:
            raise GraphRequestError(
                f"Microsoft Graph at {self.endpoint} unreachable to {what}: {network_reason(exc)}",
                transient=True,
                request_id=headers["client-request-id"],
            ) from None
        if response.status_code >= 400:
            raise graph_error(what, response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            data = response.json()
        except ValueError:
            raise GraphRequestError(
                f"Microsoft Graph answered {what} with a body that is not JSON "
                f"(HTTP {response.status_code})",
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise GraphRequestError(f"Microsoft Graph answered {what} with no JSON object")
        return data

    def list_all(self, request: GraphRequest, token: str, *, what: str) -> list[dict[str, Any]]:
        """Every ``value`` of a collection, following ``@odata.nextLink`` (bounded)."""
        out: list[dict[str, Any]] = []
        page = self.call(request, token, what=what)
        for _ in range(100):
            if page is None:
                break
            values = page.get("value")
            if isinstance(values, list):
                out.extend(v for v in values if isinstance(v, dict))
            link = page.get("@odata.nextLink")
            prefix = f"{self.endpoint}/{API_VERSION}"
            if not isinstance(link, str) or not link.startswith(prefix):
                break
            page = self.call(GraphRequest("GET", link[len(prefix) :]), token, what=what)
        return out
