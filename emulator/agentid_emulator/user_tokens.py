"""Human users' tokens: the input of OBO, and the facts about users the legs share.

A client app signs a user in and asks for ``api://<blueprint>/access_agent``:
the agent identity blueprint exposes that API, an agent identity exposes none
(agent-on-behalf-of-oauth-flow.md: "Tc (aud) == Agent ID blueprint client ID").
Its v2.0 token has ``aud`` = the blueprint's app id and ``scp`` =
``access_agent``, as the recorded client token of joetanx/mslab
``entra/agent-id/auth-flows.md`` (5.2.3) shows.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .certs import b64url
from .directory import Tenant
from .errors import AadstsError
from .scopes import ResolvedScope

# The public client a developer signs in with (Azure CLI's well-known app id).
INTERACTIVE_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
# The delegated permission an agent identity blueprint exposes to client apps.
BLUEPRINT_SCOPE = "access_agent"


def blueprint_audiences(blueprint_app_id: str) -> frozenset[str]:
    """What a user token for the blueprint may carry as ``aud`` (lower case): its app
    id (v2.0 tokens) or its identifier URI ``api://<app id>`` (v1.0 tokens)."""
    app_id = blueprint_app_id.lower()
    return frozenset({app_id, f"api://{app_id}"})


def pairwise_subject(object_id: str, app_id: str) -> str:
    """Entra's ``sub`` is pairwise: stable per (user, application)."""
    return b64url(hashlib.sha256(f"{object_id}|{app_id}".encode()).digest())[:43]


def user_not_found(tenant: Tenant) -> AadstsError:
    # Entra hides the name ({EmailHidden}); so does the emulator.
    return AadstsError(
        50034,
        "The user account {EmailHidden} does not exist in the "
        f"{tenant.tenant_id} directory. To sign into this "
        "application, the account must be added to the directory.",
    )


def default_audience(tenant: Tenant) -> str:
    """The tenant's first blueprint: what ``/_emulator/users/token`` issues for."""
    bp = next(iter(tenant.blueprints.values()), None)
    if bp is None:
        raise AadstsError(
            500011,
            "The resource principal was not found in the tenant named "
            f"{tenant.tenant_id}: it has no agent identity blueprint. "
            "Pass an audience.",
        )
    return bp.app_id


def interactive_claims(
    tenant: Tenant, upn: str, audience: str | None, scope: ResolvedScope | None = None
) -> dict[str, Any]:
    """The claims of a signed-in user's token for ``audience`` (default: the blueprint),
    or for ``scope`` (its resource is the audience, its permissions ``scp``)."""
    user = tenant.find_user(upn=upn)
    if user is None:
        raise user_not_found(tenant)
    aud = scope.resource if scope is not None else audience or default_audience(tenant)
    to_blueprint = any(aud.lower() in blueprint_audiences(bp) for bp in tenant.blueprints)
    if scope is not None:
        scp = " ".join(scope.delegated_permissions())
    else:
        scp = BLUEPRINT_SCOPE if to_blueprint else "access_as_user"
    client = INTERACTIVE_CLIENT_ID
    return {
        "aud": aud,
        "azp": client,
        "azpacr": "0",
        "appid": client,
        "appidacr": "0",
        "idtyp": "user",
        "upn": user.upn,
        "unique_name": user.upn,
        "preferred_username": user.upn,
        "name": user.display_name or user.upn,
        "oid": user.object_id,
        "sub": pairwise_subject(user.object_id, client),
        "scp": scp,
    }
