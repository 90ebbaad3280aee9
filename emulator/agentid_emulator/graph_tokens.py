"""Bearer tokens at the emulator's Microsoft Graph, checked as Graph checks them.

Graph accepts an access token that is signed by the tenant's issuer (here the
emulator's own signing key), is for Graph (``aud`` ``https://graph.microsoft.com``
or its app id ``00000003-0000-0000-c000-000000000000``), is in its valid time,
was issued by the tenant it names (``iss`` = ``{authority}/{tid}/v2.0``), and
carries permissions: ``roles`` for an app-only token, ``scp`` for a delegated
one. A refused token is 401 ``InvalidAuthenticationToken``; a token lacking the
permission an API needs is 403 ``Authorization_RequestDenied`` naming the
permissions that would do (the "Permissions" tables of the Graph beta
reference, e.g. microsoft-graph-docs-contrib
``api-reference/beta/api/agentidentity-post.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from .directory import Directory
from .jwt_tokens import GRAPH_RESOURCE, TokenIssuer

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCES = frozenset({GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", GRAPH_APP_ID})


class GraphError(Exception):
    """A Graph error reply: HTTP status, OData error ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _invalid_token(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message)


@dataclass(frozen=True)
class GraphCaller:
    """Who is calling Graph, from a verified token."""

    tenant_id: str
    app_id: str  # the client (appid/azp)
    app_only: bool
    roles: frozenset[str]
    scopes: frozenset[str]
    user_object_id: str | None = None

    def permissions(self) -> frozenset[str]:
        return self.roles if self.app_only else self.scopes

    def has_any(self, permissions: tuple[str, ...]) -> bool:
        granted = {p.lower() for p in self.permissions()}
        return any(p.lower() in granted for p in permissions)


def caller_of(
    issuer: TokenIssuer, directory: Directory, authorization: str | None, *, now: float
) -> GraphCaller:
    """The verified caller of an ``Authorization: Bearer`` header, or GraphError 401."""
    if not authorization or not authorization.strip():
        raise _invalid_token("Access token is empty.")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _invalid_token("Access token is empty.")
    try:
        claims = issuer.verify(token.strip(), now=now)
    except jwt.ExpiredSignatureError:
        raise _invalid_token("Lifetime validation failed, the token is expired.") from None
    except jwt.ImmatureSignatureError:
        raise _invalid_token("Lifetime validation failed, the token is not yet valid.") from None
    except (jwt.PyJWTError, ValueError):
        raise _invalid_token("Access token validation failure. Invalid signature.") from None
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud.lower() not in GRAPH_AUDIENCES:
        raise _invalid_token("Access token validation failure. Invalid audience.")
    tenant_id = str(claims.get("tid") or "")
    tenant = directory.tenant(tenant_id)
    if tenant is None or claims.get("iss") != issuer.issuer(tenant.tenant_id):
        raise _invalid_token("Access token validation failure. Invalid issuer.")
    roles = claims.get("roles")
    scp = claims.get("scp")
    role_set = (
        frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else None
    )
    scope_set = frozenset(scp.split()) if isinstance(scp, str) and scp.strip() else None
    if role_set is None and scope_set is None:
        raise _invalid_token("Either scp or roles claim need to be present in the token.")
    app_only = scope_set is None
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    return GraphCaller(
        tenant.tenant_id,
        app_id.lower(),
        app_only,
        role_set or frozenset(),
        scope_set or frozenset(),
        None if app_only else str(claims.get("oid") or "") or None,
    )


# "Known issue" of the Agent ID write APIs (microsoft-graph-docs-contrib
# api-reference/beta/includes/rbac-for-apis/rbac-agentid-apis-write.md): with
# either of these granted, the client's Agent ID permissions are ignored (403).
AGENT_ID_WRITE_BLOCKERS = ("Directory.AccessAsUser.All", "Directory.ReadWrite.All")


def require(
    caller: GraphCaller,
    *,
    application: tuple[str, ...],
    delegated: tuple[str, ...],
    agent_id_write: bool = False,
) -> None:
    """403 unless the caller holds one of the permissions of its kind (named in the
    error); for an Agent ID write (``agent_id_write``) also 403 when the token
    carries Directory.AccessAsUser.All or Directory.ReadWrite.All."""
    if agent_id_write and caller.has_any(AGENT_ID_WRITE_BLOCKERS):
        raise GraphError(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation: a client granted "
            "Directory.AccessAsUser.All or Directory.ReadWrite.All cannot create, update "
            "or delete agent IDs; remove that permission and request a new token.",
        )
    needed = application if caller.app_only else delegated
    if caller.has_any(needed):
        return
    kind = "application" if caller.app_only else "delegated"
    claim = "roles" if caller.app_only else "scp"
    raise GraphError(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation. This API needs one of the "
        f"{kind} permissions {', '.join(needed) or '(none: not supported)'} "
        f"in the token's {claim} claim.",
    )
