"""The token endpoint, sans-IO: a form dict in, a response (status, JSON body) out.

The five agent legs (docs/design.md) are validated for real: client
credentials, T1/T2 assertions (signature, issuer, audience, expiry, subject),
the OBO user token (signature, expiry, audience = the agent's blueprint), the
user_fic credential and the agent user; so is the blueprint's own app-only token. ``classify``
names the leg of a request from its form alone; ``TokenService.leg_of`` also
tells a blueprint's own token from an agent's.

When a resource says no (refresh_tokens.py, claims_param.py): an OBO answer
carries a refresh token when ``offline_access`` is asked (MSAL always asks:
``acquire_token_on_behalf_of`` decorates the scope), and an agent identity
redeems it with the refresh-token grant, T1 as the client assertion
(agent-on-behalf-of-oauth-flow.md, "Refresh token support"). A ``claims``
parameter (MSAL's ``claims_challenge`` merged with ``client_capabilities``)
is honoured: its ``xms_cc`` values are stamped into the token, and like every
answer here it is minted fresh (the emulator keeps no token to hand back, so
a revoked token is never returned).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from . import agent_claims
from .agent_claims import AgentFacets
from .certs import b64url
from .claims_param import capability_claims
from .client_auth import authenticate_agent, authenticate_blueprint, verify_exchange_token
from .directory import AgentIdentity, Blueprint, Directory, Tenant, User
from .errors import AadstsError, missing_parameter, render
from .jwt_tokens import TOKEN_EXCHANGE_APP_ID, TokenIssuer, fmi_subject, unverified_claims
from .refresh_tokens import GrantStore
from .scopes import ResolvedScope, is_token_exchange, resolve
from .user_tokens import blueprint_audiences, interactive_claims, pairwise_subject, user_not_found

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_USER_FIC = "user_fic"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANTS = (GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_USER_FIC, GRANT_REFRESH_TOKEN)
# Entra sends refresh_in when a token lives at least this long (half the lifetime).
REFRESH_IN_THRESHOLD_S = 7200


def classify(form: dict[str, str]) -> str | None:
    """The leg of a token request, from its form alone (None if not an agent leg)."""
    grant = form.get("grant_type")
    if grant == GRANT_CLIENT_CREDENTIALS:
        if form.get("fmi_path"):
            return "t1"
        return "t2" if is_token_exchange(form.get("scope")) else "autonomous_app"
    if grant == GRANT_JWT_BEARER:
        return "obo"
    if grant == GRANT_USER_FIC:
        return "user_fic"
    if grant == GRANT_REFRESH_TOKEN:
        return "obo_refresh"
    return None


@dataclass(frozen=True)
class TokenResponse:
    status: int
    body: dict[str, Any] = field(repr=False)
    headers: dict[str, str]
    leg: str | None
    client_id: str | None
    aadsts: int | None = None


@dataclass
class TokenService:
    """Validates token requests against a Directory and mints the answers."""

    directory: Directory
    issuer: TokenIssuer
    token_lifetime_s: int = 3600
    refresh_in_s: int | None = None
    grants: GrantStore = field(default_factory=GrantStore)

    @property
    def authority_host(self) -> str:
        return self.issuer.authority_host

    def leg_of(self, tenant_id: str, form: dict[str, str]) -> str | None:
        """The leg of a request, knowing who the client is: a blueprint's
        client_credentials without fmi_path is its own app-only token
        (``blueprint_app``) for a resource, a T1 lacking fmi_path for the
        exchange scope."""
        leg = classify(form)
        if leg in ("autonomous_app", "t2"):
            tenant = self.directory.tenant(tenant_id)
            if tenant is not None and (form.get("client_id") or "").lower() in tenant.blueprints:
                return "t1" if leg == "t2" else "blueprint_app"
        return leg

    def handle(
        self,
        tenant_id: str,
        form: dict[str, str],
        *,
        correlation_id: str | None = None,
        now: float | None = None,
    ) -> TokenResponse:
        now = time.time() if now is None else now
        leg = self.leg_of(tenant_id, form)
        client_id = form.get("client_id") or None
        try:
            body = self._dispatch(tenant_id, form, now)
        except AadstsError as err:
            rendered = render(
                err, now=now, correlation_id=correlation_id, authority_host=self.authority_host
            )
            return TokenResponse(
                rendered.status, rendered.body, rendered.headers, leg, client_id, err.code
            )
        headers = {"client-request-id": correlation_id} if correlation_id else {}
        return TokenResponse(200, body, headers, leg, client_id)

    # -- dispatch ---------------------------------------------------------------
    def _dispatch(self, tenant_id: str, form: dict[str, str], now: float) -> dict[str, Any]:
        grant = form.get("grant_type")
        if not grant:
            raise missing_parameter("grant_type")
        if grant not in GRANTS:
            raise AadstsError(
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
                error="unsupported_grant_type",
            )
        client_id = form.get("client_id")
        if not client_id:
            raise missing_parameter("client_id")
        tenant = self.tenant(tenant_id)
        blueprint = tenant.blueprints.get(client_id.lower())
        agent = tenant.agents.get(client_id.lower())
        if blueprint is None and agent is None:
            raise AadstsError(
                700016,
                f"Application with identifier '{client_id}' was not "
                f"found in the directory '{tenant.tenant_id}'. This can "
                "happen if the application has not been installed by "
                "the administrator of the tenant.",
            )
        if blueprint is not None:
            if grant != GRANT_CLIENT_CREDENTIALS:
                raise AadstsError(
                    70003,
                    f"The app requested an unsupported grant type "
                    f"'{grant}': an agent identity blueprint only "
                    "obtains app-only tokens (client_credentials).",
                    error="unsupported_grant_type",
                )
            return self._blueprint(tenant, blueprint, form, now)
        assert agent is not None
        if grant == GRANT_CLIENT_CREDENTIALS:
            return self._agent_app(tenant, agent, form, now)
        if grant == GRANT_JWT_BEARER:
            return self._obo(tenant, agent, form, now)
        if grant == GRANT_REFRESH_TOKEN:
            return self._obo_refresh(tenant, agent, form, now)
        return self._user_fic(tenant, agent, form, now)

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.directory.tenant(tenant_id)
        if tenant is None:
            raise AadstsError(
                90002,
                f"Tenant '{tenant_id}' not found. Check to make sure you "
                "have the correct tenant ID and are signing into the "
                "correct cloud.",
            )
        return tenant

    # -- legs -------------------------------------------------------------------
    def _blueprint(
        self, tenant: Tenant, bp: Blueprint, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        token_endpoint = f"{self.authority_host}/{tenant.tenant_id}/oauth2/v2.0/token"
        kind = authenticate_blueprint(
            bp,
            form,
            now=now,
            token_endpoint=token_endpoint,
            authority_host=self.authority_host,
            issuer=self.issuer,
        )
        # "appidacr"/"azpacr": 1 = client secret, 2 = certificate or federated assertion.
        acr = "1" if kind == "secret" else "2"
        if form.get("fmi_path") or is_token_exchange(form.get("scope")):
            return self._t1(tenant, bp, form, acr)
        return self._blueprint_app(tenant, bp, form, acr)

    def _blueprint_app(
        self, tenant: Tenant, bp: Blueprint, form: dict[str, str], acr: str
    ) -> dict[str, Any]:
        """The blueprint's own token for a resource (e.g. Graph, to create agent
        identities): create-delete-agent-identities.md, "Get an access token using
        agent identity blueprint"; no fmi_path."""
        scope = resolve(form.get("scope"), app_only=True)
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
        return self._app_response(tenant, claims, scope)

    def _t1(self, tenant: Tenant, bp: Blueprint, form: dict[str, str], acr: str) -> dict[str, Any]:
        scope = resolve(form.get("scope"), app_only=True)
        fmi_path = form.get("fmi_path")
        if not fmi_path:
            raise missing_parameter("fmi_path")
        if not is_token_exchange(form.get("scope")):
            raise AadstsError(
                70011,
                f"The provided value for scope {form.get('scope')} is "
                "not valid. A blueprint token for an agent (fmi_path) "
                "must use scope api://AzureADTokenExchange/.default.",
                error="invalid_scope",
            )
        agent = tenant.agents.get(fmi_path.lower())
        if agent is None or agent.blueprint_app_id != bp.app_id:
            raise AadstsError(
                700016,
                f"Application with identifier '{fmi_path}' (fmi_path) "
                "was not found as an agent identity of blueprint "
                f"'{bp.app_id}' in the directory '{tenant.tenant_id}'.",
            )
        claims = {
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
        return self._app_response(tenant, claims, scope)

    def _agent_app(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        scope = resolve(form.get("scope"), app_only=True)
        exchange = is_token_exchange(form.get("scope"))  # T2: the agent's own exchange token
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
        return self._app_response(tenant, claims, scope)

    def _obo(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        assertion = form.get("assertion")
        if not assertion:
            raise missing_parameter("assertion")
        use = form.get("requested_token_use")
        if not use:
            raise missing_parameter("requested_token_use")
        if use != "on_behalf_of":
            raise AadstsError(
                900144,
                "The request body must contain the following parameter: "
                "'requested_token_use' with the value 'on_behalf_of'.",
            )
        scope = resolve(form.get("scope"), app_only=False)
        user = self._obo_user(tenant, agent, assertion, now)
        return self._with_refresh_token(
            tenant,
            agent,
            user,
            scope,
            self._user_response(tenant, agent, user, scope, agent_claims.OBO, form),
            now,
        )

    def _obo_refresh(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        """The refresh-token grant of an agent identity (T1 as the client assertion)."""
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            raise missing_parameter("refresh_token")
        grant = self.grants.redeem(
            refresh_token, tenant_id=tenant.tenant_id, client_id=agent.app_id, now=now
        )
        scope = resolve(form.get("scope"), app_only=False)
        user = tenant.find_user(object_id=grant.user_object_id)
        if user is None:
            raise user_not_found(tenant)
        return self._with_refresh_token(
            tenant,
            agent,
            user,
            scope,
            self._user_response(tenant, agent, user, scope, agent_claims.OBO, form),
            now,
        )

    def _with_refresh_token(
        self,
        tenant: Tenant,
        agent: AgentIdentity,
        user: User,
        scope: ResolvedScope,
        body: dict[str, Any],
        now: float,
    ) -> dict[str, Any]:
        if "offline_access" in {s.lower() for s in scope.oidc}:
            body["refresh_token"] = self.grants.issue(
                tenant_id=tenant.tenant_id,
                client_id=agent.app_id,
                user_object_id=user.object_id,
                now=now,
            )
        return body

    def _obo_user(self, tenant: Tenant, agent: AgentIdentity, assertion: str, now: float) -> User:
        try:
            claims = self.issuer.verify(assertion, now=now)
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise AadstsError(
                500133,
                "Assertion is not within its valid time range. Ensure "
                "that the access token is not expired before using it "
                "for user assertion.",
                error="invalid_grant",
            ) from None
        except jwt.InvalidSignatureError:
            raise AadstsError(
                50013, "Assertion failed signature validation. [Reason - The key was not found.]"
            ) from None
        except jwt.PyJWTError:
            raise AadstsError(50027, "JWT token is invalid or malformed (assertion).") from None
        if claims.get("iss") != self.issuer.issuer(tenant.tenant_id):
            raise AadstsError(50013, f"Assertion contains an invalid issuer '{claims.get('iss')}'.")
        self._check_obo_audience(agent, str(claims.get("aud", "")))
        if claims.get("idtyp") == "app" or not claims.get("oid"):
            raise AadstsError(
                50013,
                "Assertion is not a user token: on-behalf-of needs the "
                "access token of a signed-in user.",
            )
        user = tenant.find_user(object_id=str(claims["oid"]))
        if user is None:
            raise user_not_found(tenant)
        return user

    @staticmethod
    def _check_obo_audience(agent: AgentIdentity, aud: str) -> None:
        """The user token must be for the agent's blueprint: agent-on-behalf-of-oauth-flow.md,
        "Tc (aud) == Agent ID blueprint client ID". The blueprint exposes the API
        (``api://<blueprint>/access_agent``); an agent identity exposes none."""
        bp = agent.blueprint_app_id
        if aud.lower() in blueprint_audiences(bp):
            return
        raise AadstsError(
            50013,
            "Assertion audience does not match the Client app presenting "
            f"the assertion. The audience in the assertion was '{aud}' "
            f"and the expected audience is '{bp}' or one of the "
            "Application Uris of this application with App ID "
            f"'{bp}'. The downstream client must request a token for "
            "the expected audience (the application that made the OBO "
            "request) and this application should use that token as "
            "the assertion.",
        )

    def _user_fic(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        fic = form.get("user_federated_identity_credential")
        if not fic:
            raise missing_parameter("user_federated_identity_credential")
        claims = verify_exchange_token(
            fic,
            issuer=self.issuer,
            tenant_id=tenant.tenant_id,
            now=now,
            what="User federated identity credential",
        )
        if claims.get("sub") != agent.app_id or claims.get("azp") != agent.app_id:
            raise AadstsError(
                7002137,
                "No matching federated identity record found for "
                f"presented assertion subject '{claims.get('sub')}'. "
                "The user federated identity credential must be an "
                f"exchange token of agent '{agent.app_id}'.",
            )
        upn, oid = form.get("username"), form.get("user_id")
        if not upn and not oid:
            raise missing_parameter("username")
        scope = resolve(form.get("scope"), app_only=False)
        user = tenant.find_user(upn=upn) if upn else tenant.find_user(object_id=oid)
        if user is None or user.agent_identity_app_id != agent.app_id:
            raise user_not_found(tenant)
        return self._user_response(tenant, agent, user, scope, agent_claims.AGENT_USER, form)

    # -- responses --------------------------------------------------------------
    def _lifetimes(self) -> dict[str, int]:
        lifetime = self.token_lifetime_s
        out = {"expires_in": lifetime, "ext_expires_in": lifetime}
        if self.refresh_in_s is not None:
            out["refresh_in"] = self.refresh_in_s
        elif lifetime >= REFRESH_IN_THRESHOLD_S:
            out["refresh_in"] = lifetime // 2
        return out

    def _app_response(
        self, tenant: Tenant, claims: dict[str, Any], scope: ResolvedScope
    ) -> dict[str, Any]:
        token = self.issuer.mint(tenant.tenant_id, claims, lifetime_s=self.token_lifetime_s)
        return {"token_type": "Bearer", **self._lifetimes(), "access_token": token}

    def _user_response(
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
            **self._lifetimes(),
            "access_token": token,
            "id_token": id_token,
            "client_info": client_info,
        }

    def introspect(self, token: str) -> dict[str, Any]:
        """``/_emulator/tokens/introspect``: is this token of ours valid and not revoked?
        (What a CAE resource learns from its revocation events.)"""
        try:
            claims = self.issuer.verify(token)
        except (jwt.PyJWTError, ValueError):
            claims = None
        if claims is None:
            return {"active": False, "revoked": False, "aud": None, "xms_cc": None}
        revoked = self.grants.is_revoked(str(claims.get("uti", "")))
        return {
            "active": not revoked,
            "revoked": revoked,
            "aud": claims.get("aud"),
            "xms_cc": claims.get("xms_cc"),
        }

    def revoke(self, token: str) -> dict[str, Any]:
        """The ``revoke_token`` fault: an access token (by its uti) or a refresh token."""
        if token.count(".") == 2:
            uti = unverified_claims(token).get("uti")
            if not isinstance(uti, str) or not uti:
                raise ValueError("revoke_token is a JWT without a uti claim")
            self.grants.revoke_uti(uti)
            return {"revoked": "access_token", "uti": uti}
        if self.grants.revoke_refresh_token(token):
            return {"revoked": "refresh_token"}
        raise ValueError("revoke_token is neither a JWT nor a refresh token the emulator issued")

    def interactive_user_token(
        self,
        tenant_id: str,
        upn: str,
        audience: str | None = None,
        *,
        lifetime_s: int | None = None,
    ) -> str:
        """A user token as an interactive sign-in gives (``/_emulator/users/token``)."""
        tenant = self.tenant(tenant_id)
        claims = interactive_claims(tenant, upn, audience)
        return self.issuer.mint(
            tenant.tenant_id, claims, lifetime_s=lifetime_s or self.token_lifetime_s
        )
