"""Scope strings -> (resource, permissions), as Entra's v2.0 endpoint reads them.

``https://graph.microsoft.com/.default`` asks for the statically granted
permissions of a resource; ``https://graph.microsoft.com/User.Read`` for one
permission; a short ``User.Read`` means Microsoft Graph. OIDC scopes (openid,
profile, offline_access, email) that MSAL adds to user flows are not resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AadstsError, missing_parameter
from .jwt_tokens import GRAPH_RESOURCE

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
_RESOURCE_ALIASES = {
    "00000003-0000-0000-c000-000000000000": GRAPH_RESOURCE,
    "https://graph.microsoft.com/": GRAPH_RESOURCE,
    "https://graph.microsoft.com": GRAPH_RESOURCE,
}
# What a /.default delegated request is granted (no consent model in the emulator).
DEFAULT_DELEGATED = {GRAPH_RESOURCE: ("User.Read",)}
DEFAULT_DELEGATED_OTHER = ("user_impersonation",)


@dataclass(frozen=True)
class ResolvedScope:
    resource: str  # the token's aud
    permissions: tuple[str, ...]  # empty for /.default
    is_default: bool
    oidc: tuple[str, ...]  # OIDC scopes that were asked for

    def delegated_permissions(self) -> tuple[str, ...]:
        if self.permissions:
            return self.permissions
        return DEFAULT_DELEGATED.get(self.resource, DEFAULT_DELEGATED_OTHER)

    def response_scope(self, *, delegated: bool) -> str:
        """The ``scope`` field of the token response."""
        if not delegated:
            return f"{self.resource}/.default"
        granted = [
            p if self.resource == GRAPH_RESOURCE else f"{self.resource}/{p}"
            for p in self.delegated_permissions()
        ]
        return " ".join([*granted, *self.oidc])


def _canonical_resource(resource: str) -> str:
    return _RESOURCE_ALIASES.get(resource.lower(), resource)


def _split(scope: str) -> tuple[str, str]:
    """('resource', 'permission') of one scope; '.default' marks the default scope."""
    if "/" not in scope:
        return GRAPH_RESOURCE, scope  # short Graph scope such as User.Read
    resource, _, permission = scope.rpartition("/")
    if not resource or not permission:
        raise AadstsError(
            70011, f"The provided value for scope {scope} is not valid.", error="invalid_scope"
        )
    return _canonical_resource(resource), permission


def is_token_exchange(scope: str | None) -> bool:
    return scope is not None and scope.strip().lower() == TOKEN_EXCHANGE_SCOPE.lower()


def resolve(scope: str | None, *, app_only: bool) -> ResolvedScope:
    """Resolve a request's ``scope`` (space separated) or raise the AADSTS error."""
    if scope is None or not scope.strip():
        raise missing_parameter("scope")
    parts = scope.split()
    oidc = tuple(p for p in parts if p.lower() in OIDC_SCOPES)
    resource_scopes = [p for p in parts if p.lower() not in OIDC_SCOPES]
    if not resource_scopes:
        if app_only:
            raise AadstsError(1002012, _not_default_message(scope))
        raise AadstsError(
            70011,
            f"The provided value for scope {scope} is not valid. "
            "The request does not name a resource.",
        )
    resources: dict[str, str] = {}
    permissions: list[str] = []
    is_default = False
    for item in resource_scopes:
        resource, permission = _split(item)
        resources.setdefault(resource.lower(), resource)
        if permission.lower() == ".default":
            is_default = True
        elif app_only:
            raise AadstsError(1002012, _not_default_message(item))
        elif permission not in permissions:
            permissions.append(permission)
    if len(resources) > 1:
        raise AadstsError(
            28000,
            "Provided value for the input parameter scope is not valid "
            "because it contains more than one resource. Scope "
            f"{scope} is not valid.",
        )
    if is_default and permissions:
        raise AadstsError(
            70011,
            f"The provided value for scope {scope} is not valid. "
            "Static scope limit exceeded: /.default cannot be combined "
            "with other scopes.",
        )
    if app_only and len(resource_scopes) > 1:
        raise AadstsError(
            70011,
            f"The provided value for scope {scope} is not valid. "
            "Client credential flows must have a single scope value.",
        )
    resource = next(iter(resources.values()))
    return ResolvedScope(resource, tuple(permissions), is_default, oidc)


def _not_default_message(scope: str) -> str:
    return (
        f"The provided value for scope {scope} is not valid. Client credential flows "
        "must have a scope value with /.default suffixed to the resource identifier "
        "(application ID URI)."
    )
