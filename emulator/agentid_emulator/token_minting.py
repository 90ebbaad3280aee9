"""What the token endpoint answers once a request passed its checks: each leg's
claims and the response body (access token, lifetimes, id_token, client_info).

Nothing here validates; :mod:`leg_checks` did. Every answer is minted fresh:
the emulator keeps no token to hand back, so a revoked token is never returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import agent_claims
from .agent_claims import AgentFacets
from .certs import b64url
from .claims_param import capability_claims
from .directory import AgentIdentity, Blueprint, Tenant, User
from .jwt_tokens import TOKEN_EXCHANGE_APP_ID, TokenIssuer, fmi_subject
from .scopes import ResolvedScope
from .user_tokens import pairwise_subject

# Entra sends refresh_in when a token lives at least this long (half the lifetime).
REFRESH_IN_THRESHOLD_S = 7200


def blueprint_app_claims(bp: Blueprint, acr: str, scope: ResolvedScope) -> dict[str, Any]:
    """The blueprint's own app-only token for a resource."""
    claims: dict[str, Any] = {
        "aud": scope.resource,
        "azp": bp.app_id,
        "azpacr": acr,
        "appid": bp.app_id,
        "appidacr": acr,
        "idtyp": "app",
        "oid": bp.app_id,
        "sub": bp.app_id,
        **agent_claims.BLUEPRINT_APP.claims(bp.app_id),
    }
    if bp.roles:
        claims["roles"] = list(bp.roles)
    return claims


def t1_claims(tenant: Tenant, bp: Blueprint, agent: AgentIdentity, acr: str) -> dict[str, Any]:
    """T1: the blueprint's exchange token for one of its agents (fmi_path)."""
    return {
        "aud": TOKEN_EXCHANGE_APP_ID,
        "azp": bp.app_id,
        "azpacr": acr,
        "appid": bp.app_id,
        "appidacr": acr,
        "idtyp": "app",
        "oid": bp.app_id,
        "sub": fmi_subject(tenant.tenant_id, bp.app_id, agent.app_id),
        **agent_claims.T1.claims(bp.app_id),
    }


def agent_app_claims(
    agent: AgentIdentity, scope: ResolvedScope, exchange: bool, form: dict[str, str]
) -> dict[str, Any]:
    """An agent's app-only token: T2 (``exchange``, its own exchange token) or a
    resource token (autonomous app)."""
    facets = agent_claims.T2 if exchange else agent_claims.AUTONOMOUS_APP
    claims: dict[str, Any] = {
        "aud": TOKEN_EXCHANGE_APP_ID if exchange else scope.resource,
        "azp": agent.app_id,
        "azpacr": "2",
        "appid": agent.app_id,
        "appidacr": "2",
        "idtyp": "app",
        "oid": agent.app_id,
        "sub": agent.app_id,
        **facets.claims(agent.blueprint_app_id),
        **capability_claims(form),
    }
    if not exchange and agent.roles:
        claims["roles"] = list(agent.roles)
    return claims


@dataclass(frozen=True)
class Minter:
    """Signs the answers with the service's issuer and token lifetimes."""

    issuer: TokenIssuer
    token_lifetime_s: int
    refresh_in_s: int | None

    def lifetimes(self) -> dict[str, int]:
        lifetime = self.token_lifetime_s
        out = {"expires_in": lifetime, "ext_expires_in": lifetime}
        if self.refresh_in_s is not None:
            out["refresh_in"] = self.refresh_in_s
        elif lifetime >= REFRESH_IN_THRESHOLD_S:
            out["refresh_in"] = lifetime // 2
        return out

    def app_response(self, tenant: Tenant, claims: dict[str, Any]) -> dict[str, Any]:
        token = self.issuer.mint(tenant.tenant_id, claims, lifetime_s=self.token_lifetime_s)
        return {"token_type": "Bearer", **self.lifetimes(), "access_token": token}

    def delegated_response(
        self, tenant: Tenant, client_id: str, user: User, scope: ResolvedScope
    ) -> dict[str, Any]:
        """A public client's token for a signed-in user (the device code flow)."""
        subject = pairwise_subject(user.object_id, client_id)
        claims = {
            "aud": scope.resource,
            "azp": client_id,
            "azpacr": "0",
            "appid": client_id,
            "appidacr": "0",
            "idtyp": "user",
            "upn": user.upn,
            "unique_name": user.upn,
            "name": user.display_name or user.upn,
            "oid": user.object_id,
            "sub": subject,
            "scp": " ".join(scope.delegated_permissions()),
        }
        lifetime = self.token_lifetime_s
        id_token = self.issuer.mint(
            tenant.tenant_id,
            {
                "aud": client_id,
                "sub": subject,
                "oid": user.object_id,
                "preferred_username": user.upn,
                "name": user.display_name or user.upn,
            },
            lifetime_s=lifetime,
        )
        client_info = b64url(json.dumps({"uid": user.object_id, "utid": tenant.tenant_id}).encode())
        return {
            "token_type": "Bearer",
            "scope": scope.response_scope(delegated=True),
            **self.lifetimes(),
            "access_token": self.issuer.mint(tenant.tenant_id, claims, lifetime_s=lifetime),
            "id_token": id_token,
            "client_info": client_info,
        }

    def user_response(
        self,
        tenant: Tenant,
        agent: AgentIdentity,
        user: User,
        scope: ResolvedScope,
        facets: AgentFacets,
        form: dict[str, str],
    ) -> dict[str, Any]:
        scp = " ".join(scope.delegated_permissions())
        claims = {
            "aud": scope.resource,
            "azp": agent.app_id,
            "azpacr": "2",
            "appid": agent.app_id,
            "appidacr": "2",
            "idtyp": "user",
            "upn": user.upn,
            "unique_name": user.upn,
            "name": user.display_name or user.upn,
            "oid": user.object_id,
            "sub": pairwise_subject(user.object_id, agent.app_id),
            "scp": scp,
            **facets.claims(agent.blueprint_app_id),
            **capability_claims(form),
        }
        lifetime = self.token_lifetime_s
        token = self.issuer.mint(tenant.tenant_id, claims, lifetime_s=lifetime)
        id_token = self.issuer.mint(
            tenant.tenant_id,
            {
                "aud": agent.app_id,
                "sub": pairwise_subject(user.object_id, agent.app_id),
                "oid": user.object_id,
                "preferred_username": user.upn,
                "name": user.display_name or user.upn,
            },
            lifetime_s=lifetime,
        )
        client_info = b64url(json.dumps({"uid": user.object_id, "utid": tenant.tenant_id}).encode())
        return {
            "token_type": "Bearer",
            "scope": scope.response_scope(delegated=True),
            **self.lifetimes(),
            "access_token": token,
            "id_token": id_token,
            "client_info": client_info,
        }
