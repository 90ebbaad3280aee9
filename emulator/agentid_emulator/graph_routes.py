"""Microsoft Graph beta for provisioning agent identities, sans-IO: a request's
method, path, query, headers and body in, a reply out (server.py does the I/O
under ``/graph``; a client calls ``{graph_endpoint}/beta/...``).

What it follows (MicrosoftDocs/entra-docs ``docs/agent-id/identity-platform/``
and microsoftgraph/microsoft-graph-docs-contrib ``api-reference/beta/``):

- ``POST /beta/applications`` with ``@odata.type``
  ``Microsoft.Graph.AgentIdentityBlueprint`` (or ``POST
  /beta/applications/graph.agentIdentityBlueprint``) creates a blueprint
  (create-blueprint.md; permission ``AgentIdentityBlueprint.Create``;
  ``sponsors@odata.bind`` / ``owners@odata.bind`` users must exist), and
  ``POST /beta/applications/{id}/addPassword`` gives it a secret
  (``AgentIdentityBlueprint.AddRemoveCreds.All``); ``.../federatedIdentityCredentials``
  a federated credential; ``PATCH /beta/applications/{id}`` with
  ``keyCredentials`` certificates; ``DELETE /beta/applications/{id}`` deletes it
  and its principal.
- ``POST /beta/serviceprincipals/graph.agentIdentityBlueprintPrincipal`` (or
  ``POST /beta/serviceprincipals`` with that ``@odata.type``) and ``{"appId"}``
  creates its principal (``AgentIdentityBlueprintPrincipal.Create`` or
  ``AgentIdentityBlueprint.Create``, as the doc's two tabs say); the
  principal is granted ``AgentIdentity.CreateAsManager``, the role a blueprint's
  own Graph token carries (create-delete-agent-identities.md).
- ``POST /beta/serviceprincipals/Microsoft.Graph.AgentIdentity`` with
  ``displayName``, ``agentIdentityBlueprintId`` (the blueprint's app id) and
  ``sponsors@odata.bind`` (users of the tenant), header ``OData-Version: 4.0``
  (create-delete-agent-identities.md): a blueprint's app-only token with
  ``AgentIdentity.CreateAsManager`` creates agents of its own blueprint only;
  ``AgentIdentity.Create.All`` (app or delegated) any (agent-blueprint.md: a
  blueprint "can perform exactly one operation in the tenant: provision or
  deprovision agent identities"); at most ``MAX_AGENTS_PER_BLUEPRINT`` per
  blueprint (a service limit the pages above do not state).
- A client whose token carries Directory.AccessAsUser.All or
  Directory.ReadWrite.All is refused every Agent ID write, the "known issue"
  of ``api-reference/beta/includes/rbac-for-apis/rbac-agentid-apis-write.md``.
- ``GET /beta/serviceprincipals/Microsoft.Graph.AgentIdentity?$filter=
  agentIdentityBlueprintId eq '{appId}'`` lists a blueprint's agents;
  ``GET``/``DELETE /beta/serviceprincipals/{id}``.
- ``POST /beta/users`` with ``@odata.type`` ``microsoft.graph.agentUser`` and
  ``identityParentId`` (the agent identity) creates an agent user
  (agent-users.md; ``AgentIdUser.ReadWrite.IdentityParentedBy`` lets a
  blueprint create users of its own agents; it is not granted by default); one
  agent user per agent identity, no ``passwordProfile``; ``DELETE /beta/users/{id}``.

Errors have Graph's OData shape (``{"error": {"code", "message", "innerError":
{"request-id", "date", "client-request-id"}}}``) and a ``request-id`` header.
Writes reach the token endpoint's directory after the replication delay
(replication.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, unquote

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .directory import (
    TOKEN_EXCHANGE_AUDIENCE,
    AgentIdentity,
    Blueprint,
    Directory,
    FederatedCredential,
    User,
    certificate_entry,
)
from .graph_tokens import GraphCaller, GraphError, caller_of, require
from .jwt_tokens import TokenIssuer
from .replication import Replication

MAX_AGENTS_PER_BLUEPRINT = 250
MAX_DISPLAY_NAME = 256
GRAPH_HOST = "https://graph.microsoft.com"
BLUEPRINT_TYPE = "microsoft.graph.agentidentityblueprint"
BLUEPRINT_PRINCIPAL_TYPE = "microsoft.graph.agentidentityblueprintprincipal"
AGENT_IDENTITY_TYPE = "microsoft.graph.agentidentity"
AGENT_USER_TYPE = "microsoft.graph.agentuser"
# The role a blueprint principal is granted for its own app-only Graph token.
BLUEPRINT_PRINCIPAL_ROLES = ("AgentIdentity.CreateAsManager",)
# Namespace of the Graph object ids the emulator gives seeded objects.
_OBJECT_ID_NAMESPACE = uuid.UUID("6d1f3c2a-6a47-4e0e-9b1d-7a6f0c9e4b21")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_USER_BIND = re.compile(
    r"^https://graph\.microsoft\.com/(?:v1\.0|beta)/users(?:/|\(')(?P<key>[^/')]+)'?\)?$"
)
_FILTER = re.compile(r"^\s*agentIdentityBlueprintId\s+eq\s+'(?P<id>[^']*)'\s*$", re.IGNORECASE)

# Permissions (the Graph beta reference's "Permissions" tables).
P_BLUEPRINT_CREATE = ("AgentIdentityBlueprint.Create",)
P_BLUEPRINT_CREDS = (
    "AgentIdentityBlueprint.AddRemoveCreds.All",
    "AgentIdentityBlueprint.ReadWrite.All",
)
# create-blueprint.md's REST tab asks for AgentIdentityBlueprint.Create, its
# PowerShell tab for AgentIdentityBlueprintPrincipal.Create: either will do.
P_PRINCIPAL_CREATE = ("AgentIdentityBlueprintPrincipal.Create", "AgentIdentityBlueprint.Create")
P_AGENT_CREATE_APP = ("AgentIdentity.CreateAsManager", "AgentIdentity.Create.All")
P_AGENT_CREATE_DELEGATED = ("AgentIdentity.Create.All",)
P_AGENT_READ = ("AgentIdentity.Read.All", "AgentIdentity.ReadWrite.All", "Application.Read.All")
P_AGENT_DELETE = ("AgentIdentity.DeleteRestore.All", "AgentIdentity.ReadWrite.All")
P_BLUEPRINT_DELETE = (
    "AgentIdentityBlueprint.DeleteRestore.All",
    "AgentIdentityBlueprint.ReadWrite.All",
)
P_AGENT_USER_WRITE = (
    "AgentIdUser.ReadWrite.IdentityParentedBy",
    "AgentIdUser.ReadWrite.All",
    "User.ReadWrite.All",
)


@dataclass(frozen=True)
class GraphReply:
    status: int
    body: dict[str, Any] | None = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict)


def is_guid(text: object) -> TypeGuard[str]:
    return isinstance(text, str) and bool(_GUID.match(text))


def _bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def _key_credential(entry: object) -> dict[str, rsa.RSAPublicKey]:
    """One ``keyCredential`` (Graph's keyCredential resource) as thumbprint -> key."""
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise _bad_request("Each keyCredential needs 'key': the base64 DER certificate.")
    if entry.get("type") != "AsymmetricX509Cert" or entry.get("usage") != "Verify":
        raise _bad_request(
            "The emulator takes keyCredentials of type 'AsymmetricX509Cert', usage 'Verify'."
        )
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(entry["key"], validate=True))
        return certificate_entry(cert)
    except ValueError:  # SeedError too: a certificate of no RSA key
        raise _bad_request("The keyCredential 'key' is not a base64 DER RSA certificate.") from None


def _not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


def _object_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(_OBJECT_ID_NAMESPACE, f"{kind}:{key.lower()}"))


def _now_iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# addPassword's default lifetime when no endDateTime is given (application-addpassword.md).
DEFAULT_SECRET_LIFETIME_S = 2 * 365 * 86400


def _end_date(credential: object, now: float) -> float:
    """``passwordCredential.endDateTime`` (ISO 8601, in the future), else two years."""
    end = credential.get("endDateTime") if isinstance(credential, dict) else None
    if end is None:
        return now + DEFAULT_SECRET_LIFETIME_S
    try:
        parsed = dt.datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        raise _bad_request(f"Invalid value '{end}' for property 'endDateTime'.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    if parsed.timestamp() <= now:
        raise _bad_request("Property 'endDateTime' must be in the future.")
    return parsed.timestamp()


@dataclass
class _TenantObjects:
    """One tenant as Graph sees it (written at once; the token endpoint lags)."""

    applications: dict[str, dict[str, Any]] = field(default_factory=dict)  # by object id
    principals: dict[str, dict[str, Any]] = field(default_factory=dict)  # by object id
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # by object id
    domains: set[str] = field(default_factory=set)

    def application_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return next(
            (a for a in self.applications.values() if a["appId"].lower() == app_id.lower()), None
        )

    def principal_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return next(
            (p for p in self.principals.values() if p["appId"].lower() == app_id.lower()), None
        )

    def agents_of(self, blueprint_app_id: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.principals.values()
            if p.get("agentIdentityBlueprintId", "").lower() == blueprint_app_id.lower()
        ]

    def find_user(self, key: str) -> dict[str, Any] | None:
        if key.lower() in self.users:
            return self.users[key.lower()]
        return next(
            (u for u in self.users.values() if u["userPrincipalName"].lower() == key.lower()),
            None,
        )


@dataclass(frozen=True)
class _Request:
    """One Graph request, as its handler sees it."""

    caller: GraphCaller
    objects: _TenantObjects
    body: Any = field(repr=False)
    params: dict[str, str]
    headers: Mapping[str, str] = field(repr=False)
    now: float
    key: str = ""  # the {id} segment of the path, for routes that have one


_Handler = Callable[[_Request], GraphReply]


def _odata_type(body: Mapping[str, Any]) -> str:
    value = body.get("@odata.type")
    return value.lstrip("#").lower() if isinstance(value, str) else ""


def _display_name(body: Mapping[str, Any]) -> str:
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise _bad_request("Property 'displayName' is required and must be a non-empty string.")
    if len(name) > MAX_DISPLAY_NAME:
        raise _bad_request(
            f"Invalid value specified for property 'displayName': longer than "
            f"{MAX_DISPLAY_NAME} characters."
        )
    return name


class GraphService:
    """The Graph objects of every tenant, and the writes that replicate them."""

    def __init__(self, directory: Directory, issuer: TokenIssuer, replication: Replication) -> None:
        self._directory = directory
        self._issuer = issuer
        self._replication = replication
        self._lock = threading.Lock()
        self._tenants: dict[str, _TenantObjects] = {}
        for tenant_id, tenant in directory.tenants.items():
            objects = _TenantObjects()
            for bp in tenant.blueprints.values():
                app_oid = _object_id("application", bp.app_id)
                objects.applications[app_oid] = {
                    **self._application_json(app_oid, bp.app_id, bp.display_name),
                    "_has_principal": True,
                }
                sp_oid = _object_id("servicePrincipal", bp.app_id)
                objects.principals[sp_oid] = self._principal_json(
                    sp_oid, bp.app_id, bp.display_name
                )
            for agent in tenant.agents.values():
                objects.principals[agent.app_id.lower()] = self._agent_json(
                    agent.app_id, agent.blueprint_app_id, agent.display_name
                )
            for user in tenant.users_by_oid.values():
                objects.users[user.object_id.lower()] = self._user_json(user)
                if user.agent_identity_app_id is None:
                    objects.domains.add(user.upn.rpartition("@")[2].lower())
            self._tenants[tenant_id.lower()] = objects

    # -- JSON shapes ----------------------------------------------------------
    @staticmethod
    def _application_json(object_id: str, app_id: str, name: str) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.agentIdentityBlueprint",
            "id": object_id,
            "appId": app_id,
            "displayName": name,
            "passwordCredentials": [],
            "federatedIdentityCredentials": [],
        }

    @staticmethod
    def _principal_json(object_id: str, app_id: str, name: str) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.agentIdentityBlueprintPrincipal",
            "id": object_id,
            "appId": app_id,
            "displayName": name,
            "servicePrincipalType": "Application",
        }

    @staticmethod
    def _agent_json(app_id: str, blueprint_app_id: str, name: str) -> dict[str, Any]:
        # An agent identity has no application of its own: its appId is its id.
        return {
            "@odata.type": "#microsoft.graph.agentIdentity",
            "id": app_id,
            "appId": app_id,
            "displayName": name,
            "agentIdentityBlueprintId": blueprint_app_id,
            "servicePrincipalType": "ServiceIdentity",
        }

    @staticmethod
    def _user_json(user: User) -> dict[str, Any]:
        out: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.user",
            "id": user.object_id,
            "userPrincipalName": user.upn,
            "displayName": user.display_name,
        }
        if user.agent_identity_app_id is not None:
            out["@odata.type"] = "#microsoft.graph.agentUser"
            out["identityParentId"] = user.agent_identity_app_id
        return out

    # -- entry point ------------------------------------------------------------
    def reply(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: Any,
        *,
        now: float | None = None,
    ) -> GraphReply:
        """``path`` is below the Graph root, e.g. ``/beta/applications``; ``headers``
        have lower-case names; ``body`` is the parsed JSON (None when absent).
        Raises GraphError for a refused request (graph_reply renders it)."""
        current = time.time() if now is None else now
        caller = caller_of(self._issuer, self._directory, headers.get("authorization"), now=current)
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if not segments or segments[0] != "beta":
            raise GraphError(
                400, "BadRequest", "Invalid version: the emulator serves Microsoft Graph beta."
            )
        route = [s.lower() for s in segments[1:]]
        params = dict(parse_qsl(query, keep_blank_values=True))
        with self._lock:
            objects = self._tenants.setdefault(caller.tenant_id.lower(), _TenantObjects())
            handler, key = self._route(method, route, segments[1:])
            return handler(_Request(caller, objects, body, params, headers, current, key))

    def _route(self, method: str, route: list[str], raw: list[str]) -> tuple[_Handler, str]:
        """The handler of a request and the ``{id}`` segment of its path ("" if none)."""
        n = len(route)
        table: dict[tuple[str, ...], _Handler] = {
            ("POST", "applications"): self._create_blueprint,
            # The type cast in the URL (create-blueprint.md's PowerShell tab).
            ("POST", "applications", "graph.agentidentityblueprint"): self._create_blueprint_cast,
            ("POST", "applications", "microsoft.graph.agentidentityblueprint"): (
                self._create_blueprint_cast
            ),
            ("POST", "serviceprincipals"): self._create_principal_typed,
            ("POST", "serviceprincipals", "graph.agentidentityblueprintprincipal"): (
                self._create_principal
            ),
            ("POST", "serviceprincipals", "microsoft.graph.agentidentityblueprintprincipal"): (
                self._create_principal
            ),
            ("POST", "serviceprincipals", "microsoft.graph.agentidentity"): self._create_agent,
            ("POST", "serviceprincipals", "graph.agentidentity"): self._create_agent,
            ("GET", "serviceprincipals", "microsoft.graph.agentidentity"): self._list_agents,
            ("GET", "serviceprincipals", "graph.agentidentity"): self._list_agents,
            ("POST", "users"): self._create_agent_user,
        }
        if (method, *route) in table:
            return table[(method, *route)], ""
        if n == 3 and route[0] == "applications" and method == "POST":
            if route[2] == "addpassword":
                return self._add_password, raw[1]
            if route[2] == "federatedidentitycredentials":
                return self._add_federated, raw[1]
        if n == 2 and route[0] == "applications" and method == "PATCH":
            return self._update_blueprint, raw[1]
        # Also .../microsoft.graph.agentIdentityBlueprint (the reference's form).
        typed = n == 3 and route[2].endswith("agentidentityblueprint")
        if route[:1] == ["applications"] and method == "DELETE" and (n == 2 or typed):
            return self._delete_blueprint, raw[1]
        if n == 2 and route[0] == "serviceprincipals" and method == "GET":
            return self._get_principal, raw[1]
        if n == 2 and route[0] == "serviceprincipals" and method == "DELETE":
            return self._delete_agent, raw[1]
        if n == 2 and route[0] == "users" and method == "DELETE":
            return self._delete_agent_user, raw[1]
        raise GraphError(
            400,
            "BadRequest",
            f"Resource not found for the segment '{raw[0] if raw else ''}' "
            "(the emulator serves the agent identity provisioning APIs only).",
        )

    # -- helpers ----------------------------------------------------------------
    @staticmethod
    def _object_body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad_request("The request body must be a JSON object.", "BadRequest")
        return body

    def _sponsors(
        self,
        objects: _TenantObjects,
        body: dict[str, Any],
        *,
        required: bool,
        prop: str = "sponsors@odata.bind",
    ) -> list[str]:
        """The user ids of ``prop`` (``sponsors@odata.bind``, ``owners@odata.bind``;
        users by id or UPN); each must be a (human) user of the tenant."""
        binds = body.get(prop)
        if binds is None and not required:
            return []
        if not isinstance(binds, list) or not binds or not all(isinstance(b, str) for b in binds):
            raise _bad_request(
                f"Property '{prop}' is required: a non-empty array of user "
                "references such as 'https://graph.microsoft.com/v1.0/users/{id}'."
            )
        role = prop.partition("s@")[0]
        ids: list[str] = []
        for bind in binds:
            match = _USER_BIND.match(bind)
            if match is None:
                raise _bad_request(f"Invalid {role} reference '{bind}': not a user URL.")
            user = objects.find_user(match["key"])
            if user is None or user["@odata.type"] != "#microsoft.graph.user":
                raise _bad_request(
                    f"Invalid {role}: the user '{match['key']}' does not exist in the tenant.",
                    "Request_ResourceNotFound",
                )
            ids.append(str(user["id"]))
        return ids

    @staticmethod
    def _created(kind: str, entity: dict[str, Any]) -> GraphReply:
        return GraphReply(
            201, {"@odata.context": f"{GRAPH_HOST}/beta/$metadata#{kind}/$entity", **entity}
        )

    # -- blueprints -------------------------------------------------------------
    def _create_blueprint_cast(self, req: _Request) -> GraphReply:
        """``POST /applications/graph.agentIdentityBlueprint``: the type is in the URL."""
        body = self._object_body(req.body)
        if _odata_type(body) not in ("", BLUEPRINT_TYPE):
            raise _bad_request("'@odata.type' contradicts the type cast in the URL.")
        return self._create(req, body)

    def _create_blueprint(self, req: _Request) -> GraphReply:
        body = self._object_body(req.body)
        if _odata_type(body) != BLUEPRINT_TYPE:
            raise _bad_request(
                "The emulator creates agent identity blueprints only: set '@odata.type' "
                "to 'Microsoft.Graph.AgentIdentityBlueprint'."
            )
        return self._create(req, body)

    def _create(self, req: _Request, body: dict[str, Any]) -> GraphReply:
        """A new blueprint (create-blueprint.md): sponsors and owners must exist."""
        caller, objects = req.caller, req.objects
        require(
            caller,
            application=P_BLUEPRINT_CREATE,
            delegated=P_BLUEPRINT_CREATE,
            agent_id_write=True,
        )
        name = _display_name(body)
        sponsors = self._sponsors(objects, body, required=False)
        self._sponsors(objects, body, required=False, prop="owners@odata.bind")
        app_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
        entity = self._application_json(object_id, app_id, name)
        objects.applications[object_id] = {**entity, "_sponsors": sponsors}
        return self._created("applications", entity)

    def _application(self, objects: _TenantObjects, object_id: str) -> dict[str, Any]:
        if not is_guid(object_id):
            raise _bad_request(f"Invalid object identifier '{object_id}'.")
        app = objects.applications.get(object_id.lower())
        if app is None:
            raise _not_found(object_id)
        return app

    def _sync_blueprint(self, app: dict[str, Any], tenant_id: str, now: float) -> None:
        """Replicate the blueprint (once it has a principal) with its credentials as now."""
        if not app.get("_has_principal"):
            return
        app_id, name = app["appId"], app["displayName"]
        secrets_now = tuple(app.get("_secrets", ()))
        feds_now = tuple(app.get("_federated", ()))
        certs_now: dict[str, rsa.RSAPublicKey] = dict(app.get("_certificates", {}))

        def change(directory: Directory) -> None:
            tenant = directory.tenant(tenant_id)
            if tenant is None:
                return
            old = tenant.blueprints.get(app_id.lower())
            if old is None:
                old = Blueprint(app_id, display_name=name, roles=BLUEPRINT_PRINCIPAL_ROLES)
            new = replace(
                old,
                secrets=tuple(dict.fromkeys((*old.secrets, *secrets_now))),
                federated_credentials=tuple(dict.fromkeys((*old.federated_credentials, *feds_now))),
                # keyCredentials are replaced as a whole (a PATCH sets the list).
                certificates=certs_now if "_certificates" in app else old.certificates,
            )
            # Copy on write: token threads may be iterating the old dict.
            tenant.blueprints = {**tenant.blueprints, app_id.lower(): new}

        self._replication.schedule(change, now=now)

    def _add_password(self, req: _Request) -> GraphReply:
        object_id = req.key
        caller, objects, body, now = req.caller, req.objects, req.body, req.now
        require(
            caller, application=P_BLUEPRINT_CREDS, delegated=P_BLUEPRINT_CREDS, agent_id_write=True
        )
        app = self._application(objects, object_id)
        credential = body.get("passwordCredential") if isinstance(body, dict) else None
        name = credential.get("displayName") if isinstance(credential, dict) else None
        secret = secrets.token_urlsafe(30)
        app.setdefault("_secrets", []).append(secret)
        self._sync_blueprint(app, caller.tenant_id, now)
        end = _end_date(credential, now)
        return GraphReply(
            200,
            {
                "@odata.context": f"{GRAPH_HOST}/beta/$metadata#microsoft.graph.passwordCredential",
                "customKeyIdentifier": None,
                "displayName": name if isinstance(name, str) else None,
                "endDateTime": _now_iso(end),
                "hint": secret[:3],
                "keyId": str(uuid.uuid4()),
                "secretText": secret,
                "startDateTime": _now_iso(now),
            },
        )

    def _add_federated(self, req: _Request) -> GraphReply:
        object_id = req.key
        caller, objects, body, now = req.caller, req.objects, req.body, req.now
        require(
            caller, application=P_BLUEPRINT_CREDS, delegated=P_BLUEPRINT_CREDS, agent_id_write=True
        )
        app = self._application(objects, object_id)
        body = self._object_body(body)
        name, issuer, subject = body.get("name"), body.get("issuer"), body.get("subject")
        audiences = body.get("audiences", [TOKEN_EXCHANGE_AUDIENCE])
        if not all(isinstance(v, str) and v for v in (name, issuer, subject)) or not (
            isinstance(audiences, list) and len(audiences) == 1 and isinstance(audiences[0], str)
        ):
            raise _bad_request(
                "'name', 'issuer' and 'subject' are required strings; 'audiences' one string."
            )
        cred = FederatedCredential(str(issuer), str(subject), audiences[0])
        app.setdefault("_federated", []).append(cred)
        self._sync_blueprint(app, caller.tenant_id, now)
        entity = {
            "id": str(uuid.uuid4()),
            "name": name,
            "issuer": issuer,
            "subject": subject,
            "audiences": audiences,
        }
        return self._created("applications('{object_id}')/federatedIdentityCredentials", entity)

    def _update_blueprint(self, req: _Request) -> GraphReply:
        """``PATCH /applications/{id}``: the emulator updates ``keyCredentials`` only
        (a certificate credential, create-blueprint.md "You can also use client
        certificates"; Graph beta agentidentityblueprint-update.md): the list
        replaces the blueprint's certificates; each ``key`` is the base64 DER
        certificate of type ``AsymmetricX509Cert`` with usage ``Verify``."""
        caller, objects, now = req.caller, req.objects, req.now
        require(
            caller, application=P_BLUEPRINT_CREDS, delegated=P_BLUEPRINT_CREDS, agent_id_write=True
        )
        app = self._application(objects, req.key)
        body = self._object_body(req.body)
        unknown = sorted(set(body) - {"keyCredentials"})
        if unknown:
            raise _bad_request(
                f"The emulator updates 'keyCredentials' only, not {', '.join(unknown)}."
            )
        entries = body.get("keyCredentials")
        if not isinstance(entries, list):
            raise _bad_request("Property 'keyCredentials' must be an array.")
        certificates: dict[str, rsa.RSAPublicKey] = {}
        for entry in entries:
            certificates.update(_key_credential(entry))
        app["_certificates"] = certificates
        self._sync_blueprint(app, caller.tenant_id, now)
        return GraphReply(204, None)

    def _delete_blueprint(self, req: _Request) -> GraphReply:
        """``DELETE /applications/{id}``: the blueprint and its blueprint principal
        (Graph beta agentidentityblueprint-delete.md, also with the type cast in
        the path; deleting an application deletes its service principal)."""
        caller, objects, now = req.caller, req.objects, req.now
        require(
            caller,
            application=P_BLUEPRINT_DELETE,
            delegated=P_BLUEPRINT_DELETE,
            agent_id_write=True,
        )
        app = self._application(objects, req.key)
        del objects.applications[app["id"].lower()]
        principal = objects.principal_by_app_id(app["appId"])
        if principal is not None:
            del objects.principals[principal["id"].lower()]
        app_id, tenant_id = app["appId"].lower(), caller.tenant_id

        def change(directory: Directory) -> None:
            tenant = directory.tenant(tenant_id)
            if tenant is not None:
                tenant.blueprints = {k: v for k, v in tenant.blueprints.items() if k != app_id}

        self._replication.schedule(change, now=now)
        return GraphReply(204, None)

    # -- blueprint principals ----------------------------------------------------
    def _create_principal_typed(self, req: _Request) -> GraphReply:
        body = req.body
        if _odata_type(self._object_body(body)) != BLUEPRINT_PRINCIPAL_TYPE:
            raise _bad_request(
                "The emulator creates agent identity blueprint principals only: set "
                "'@odata.type' to 'Microsoft.Graph.AgentIdentityBlueprintPrincipal'."
            )
        return self._create_principal(req)

    def _create_principal(self, req: _Request) -> GraphReply:
        caller, objects, body, now = req.caller, req.objects, req.body, req.now
        require(
            caller,
            application=P_PRINCIPAL_CREATE,
            delegated=P_PRINCIPAL_CREATE,
            agent_id_write=True,
        )
        body = self._object_body(body)
        app_id = body.get("appId")
        if not is_guid(app_id):
            raise _bad_request("Property 'appId' is required and must be a GUID.")
        app = objects.application_by_app_id(app_id)
        if app is None:
            raise _bad_request(
                f"The appId '{app_id}' of the service principal does not reference a valid "
                "agent identity blueprint.",
                "Request_ResourceNotFound",
            )
        if objects.principal_by_app_id(app_id) is not None:
            raise GraphError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                f"The agent identity blueprint '{app_id}' already has a service principal.",
            )
        object_id = str(uuid.uuid4())
        entity = self._principal_json(object_id, app["appId"], app["displayName"])
        objects.principals[object_id] = entity
        app["_has_principal"] = True
        self._sync_blueprint(app, caller.tenant_id, now)
        return self._created("servicePrincipals", entity)

    # -- agent identities ---------------------------------------------------------
    def _create_agent(self, req: _Request) -> GraphReply:
        caller, objects, body, now = req.caller, req.objects, req.body, req.now
        headers = req.headers
        require(
            caller,
            application=P_AGENT_CREATE_APP,
            delegated=P_AGENT_CREATE_DELEGATED,
            agent_id_write=True,
        )
        if headers.get("odata-version", "").strip() != "4.0":
            raise _bad_request(
                "The 'OData-Version: 4.0' request header is required to create an agent identity.",
                "BadRequest",
            )
        body = self._object_body(body)
        name = _display_name(body)
        blueprint_id = body.get("agentIdentityBlueprintId")
        if not is_guid(blueprint_id):
            raise _bad_request(
                "Property 'agentIdentityBlueprintId' is required and must be a GUID."
            )
        # CreateAsManager: a blueprint creates agents of its own only.
        own_only = caller.app_only and not caller.has_any(("AgentIdentity.Create.All",))
        if own_only and caller.app_id != blueprint_id.lower():
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation: "
                "AgentIdentity.CreateAsManager lets an agent identity blueprint create "
                f"agent identities of its own blueprint only, not of '{blueprint_id}'.",
            )
        principal = objects.principal_by_app_id(blueprint_id)
        if principal is None:
            raise _bad_request(
                f"The agent identity blueprint '{blueprint_id}' has no service principal "
                "in this tenant (create the agent identity blueprint principal first).",
                "Request_ResourceNotFound",
            )
        sponsors = self._sponsors(objects, body, required=True)
        if len(objects.agents_of(blueprint_id)) >= MAX_AGENTS_PER_BLUEPRINT:
            raise _bad_request(
                f"The agent identity blueprint '{blueprint_id}' already has "
                f"{MAX_AGENTS_PER_BLUEPRINT} agent identities, the most it can have.",
                "Request_QuotaExceeded",
            )
        blueprint_app_id = str(principal["appId"])  # the directory's spelling
        agent_id = str(uuid.uuid4())
        entity = self._agent_json(agent_id, blueprint_app_id, name)
        objects.principals[agent_id] = {**entity, "_sponsors": sponsors}
        tenant_id = caller.tenant_id

        def change(directory: Directory) -> None:
            tenant = directory.tenant(tenant_id)
            if tenant is not None:
                agent = AgentIdentity(agent_id, blueprint_app_id, display_name=name)
                tenant.agents = {**tenant.agents, agent_id: agent}

        self._replication.schedule(change, now=now)
        return self._created("servicePrincipals", entity)

    def _visible_agent(self, caller: GraphCaller, agent: dict[str, Any]) -> bool:
        """May the caller read (or manage) this agent identity?"""
        if caller.has_any(P_AGENT_READ + P_AGENT_DELETE + ("AgentIdentity.Create.All",)):
            return True
        # A blueprint (CreateAsManager) manages the agents it created.
        return caller.app_only and caller.app_id == agent["agentIdentityBlueprintId"].lower()

    def _list_agents(self, req: _Request) -> GraphReply:
        caller, objects, params = req.caller, req.objects, req.params
        require(
            caller,
            application=P_AGENT_READ + P_AGENT_CREATE_APP,
            delegated=P_AGENT_READ + P_AGENT_CREATE_DELEGATED,
        )
        flt = params.get("$filter")
        agents = [p for p in objects.principals.values() if "agentIdentityBlueprintId" in p]
        if flt is not None:
            match = _FILTER.match(flt)
            if match is None:
                raise _bad_request(
                    f"Invalid filter clause '{flt}': the emulator supports "
                    "agentIdentityBlueprintId eq '{appId}'.",
                    "BadRequest",
                )
            if not is_guid(match["id"]):
                raise _bad_request(f"Invalid GUID '{match['id']}' in the filter.", "BadRequest")
            agents = [
                a for a in agents if a["agentIdentityBlueprintId"].lower() == match["id"].lower()
            ]
        visible = [self._public(a) for a in agents if self._visible_agent(caller, a)]
        return GraphReply(
            200,
            {
                "@odata.context": f"{GRAPH_HOST}/beta/$metadata#servicePrincipals/"
                "microsoft.graph.agentIdentity",
                "value": visible,
            },
        )

    @staticmethod
    def _public(entity: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in entity.items() if not k.startswith("_")}
        if "_sponsors" in entity:
            out["sponsors"] = [{"id": s} for s in entity["_sponsors"]]
        return out

    def _principal(self, objects: _TenantObjects, sp_id: str) -> dict[str, Any]:
        if not is_guid(sp_id):
            raise _bad_request(f"Invalid object identifier '{sp_id}'.")
        sp = objects.principals.get(sp_id.lower())
        if sp is None:
            raise _not_found(sp_id)
        return sp

    def _get_principal(self, req: _Request) -> GraphReply:
        sp_id = req.key
        caller, objects = req.caller, req.objects
        require(
            caller,
            application=P_AGENT_READ + P_AGENT_CREATE_APP,
            delegated=P_AGENT_READ + P_AGENT_CREATE_DELEGATED,
        )
        sp = self._principal(objects, sp_id)
        if "agentIdentityBlueprintId" in sp and not self._visible_agent(caller, sp):
            raise _not_found(sp_id)
        return GraphReply(
            200,
            {
                "@odata.context": f"{GRAPH_HOST}/beta/$metadata#servicePrincipals/$entity",
                **self._public(sp),
            },
        )

    def _delete_agent(self, req: _Request) -> GraphReply:
        sp_id = req.key
        caller, objects, now = req.caller, req.objects, req.now
        require(
            caller,
            application=(*P_AGENT_DELETE, "AgentIdentity.CreateAsManager"),
            delegated=P_AGENT_DELETE,
            agent_id_write=True,
        )
        sp = self._principal(objects, sp_id)
        if "agentIdentityBlueprintId" not in sp:
            raise _bad_request("The emulator deletes agent identities only.")
        if not caller.has_any(P_AGENT_DELETE) and not self._visible_agent(caller, sp):
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation: a blueprint deletes "
                "agent identities of its own blueprint only.",
            )
        del objects.principals[sp["id"].lower()]
        agent_id, tenant_id = sp["appId"].lower(), caller.tenant_id

        def change(directory: Directory) -> None:
            tenant = directory.tenant(tenant_id)
            if tenant is not None:
                tenant.agents = {k: v for k, v in tenant.agents.items() if k != agent_id}

        self._replication.schedule(change, now=now)
        return GraphReply(204, None)

    # -- agent users --------------------------------------------------------------
    def _may_manage_user_of(self, caller: GraphCaller, agent: dict[str, Any]) -> bool:
        if caller.has_any(("AgentIdUser.ReadWrite.All", "User.ReadWrite.All")):
            return True
        # IdentityParentedBy: users whose parent agent identity the caller manages.
        return caller.app_only and caller.app_id == agent["agentIdentityBlueprintId"].lower()

    def _create_agent_user(self, req: _Request) -> GraphReply:
        caller, objects, body, now = req.caller, req.objects, req.body, req.now
        require(caller, application=P_AGENT_USER_WRITE, delegated=P_AGENT_USER_WRITE)
        body = self._object_body(body)
        if _odata_type(body) != AGENT_USER_TYPE:
            raise _bad_request(
                "The emulator creates agent users only: set '@odata.type' to "
                "'microsoft.graph.agentUser'."
            )
        name = _display_name(body)
        upn, nickname = body.get("userPrincipalName"), body.get("mailNickname")
        parent_id, enabled = body.get("identityParentId"), body.get("accountEnabled")
        if not isinstance(upn, str) or upn.count("@") != 1 or not upn.partition("@")[0]:
            raise _bad_request("Property 'userPrincipalName' is required: 'alias@domain'.")
        if not isinstance(nickname, str) or not nickname or len(nickname) > 64:
            raise _bad_request("Property 'mailNickname' is required (1 to 64 characters).")
        if not isinstance(enabled, bool):
            raise _bad_request("Property 'accountEnabled' is required (a boolean).")
        if "passwordProfile" in body:
            # agent-users.md: "Agent users can't have credentials like passwords".
            raise _bad_request("An agent user cannot have a password ('passwordProfile').")
        if not is_guid(parent_id):
            raise _bad_request("Property 'identityParentId' is required and must be a GUID.")
        domain = upn.rpartition("@")[2].lower()
        if domain not in objects.domains:
            raise _bad_request(
                f"The domain portion of the userPrincipalName property is invalid: "
                f"'{domain}' is not a verified domain of the tenant.",
            )
        if objects.find_user(upn) is not None:
            raise _bad_request(
                "Another object with the same value for property userPrincipalName already exists.",
                "Request_ObjectConflict",
            )
        parent = objects.principals.get(parent_id.lower())
        if parent is None or "agentIdentityBlueprintId" not in parent:
            raise _bad_request(
                f"The identityParentId '{parent_id}' is not an agent identity of the tenant.",
                "Request_ResourceNotFound",
            )
        if not self._may_manage_user_of(caller, parent):
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation: "
                "AgentIdUser.ReadWrite.IdentityParentedBy covers agent users of the "
                "caller's own agent identities only.",
            )
        if any(
            u.get("identityParentId", "").lower() == parent_id.lower()
            for u in objects.users.values()
        ):
            raise _bad_request(
                f"The agent identity '{parent_id}' already has an agent user.",
                "Request_ObjectConflict",
            )
        user = User(upn, str(uuid.uuid4()), name, agent_identity_app_id=parent["appId"])
        entity = {**self._user_json(user), "mailNickname": nickname, "accountEnabled": enabled}
        objects.users[user.object_id] = entity
        tenant_id = caller.tenant_id

        def change(directory: Directory) -> None:
            tenant = directory.tenant(tenant_id)
            if tenant is not None:
                tenant.users_by_upn = {**tenant.users_by_upn, user.upn.lower(): user}
                tenant.users_by_oid = {**tenant.users_by_oid, user.object_id.lower(): user}

        self._replication.schedule(change, now=now)
        return self._created("users", entity)

    def _delete_agent_user(self, req: _Request) -> GraphReply:
        user_id = req.key
        caller, objects, now = req.caller, req.objects, req.now
        require(caller, application=P_AGENT_USER_WRITE, delegated=P_AGENT_USER_WRITE)
        # DELETE /users/{id | userPrincipalName} (Graph beta user-delete.md).
        if not is_guid(user_id) and "@" not in user_id:
            raise _bad_request(f"Invalid object identifier '{user_id}'.")
        entity = objects.find_user(user_id)
        if entity is None:
            raise _not_found(user_id)
        user_id = str(entity["id"])
        if "identityParentId" not in entity:
            raise _bad_request("The emulator deletes agent users only.")
        parent = objects.principals.get(entity["identityParentId"].lower())
        if parent is not None and not self._may_manage_user_of(caller, parent):
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        del objects.users[user_id.lower()]
        tenant_id, upn, oid = caller.tenant_id, entity["userPrincipalName"], entity["id"]

        def change(directory: Directory) -> None:
            tenant = directory.tenant(tenant_id)
            if tenant is not None:
                tenant.users_by_upn = {
                    k: v for k, v in tenant.users_by_upn.items() if k != upn.lower()
                }
                tenant.users_by_oid = {
                    k: v for k, v in tenant.users_by_oid.items() if k != oid.lower()
                }

        self._replication.schedule(change, now=now)
        return GraphReply(204, None)


def graph_reply(
    service: GraphService,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    now: float | None = None,
) -> GraphReply:
    """The answer to one Graph request (``headers`` with lower-case names): every
    reply has a ``request-id`` header, and echoes ``client-request-id``."""
    current = time.time() if now is None else now
    request_id = str(uuid.uuid4())
    client_request_id = headers.get("client-request-id")
    out_headers = {"request-id": request_id}
    if client_request_id:
        out_headers["client-request-id"] = client_request_id
    try:
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise GraphError(400, "BadRequest", "The request body is not valid JSON.") from None
        reply = service.reply(method, path, query, headers, body, now=current)
    except GraphError as err:
        inner = {"request-id": request_id, "date": _now_iso(current)}
        if client_request_id:
            inner["client-request-id"] = client_request_id
        if err.status == 401:
            out_headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        error = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
        return GraphReply(err.status, error, out_headers)
    return GraphReply(reply.status, reply.body, {**reply.headers, **out_headers})
