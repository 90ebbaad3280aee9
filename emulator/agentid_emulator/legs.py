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

This module routes a request to its leg; each leg's checks are in
leg_checks.py, its claims and response body in token_minting.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from . import agent_claims, leg_checks, token_minting
from .client_auth import authenticate_agent, authenticate_blueprint
from .device_codes import DEVICE_CODE_GRANT, DEVICE_LOGIN_PATH, PUBLIC_CLIENT_IDS, DeviceCodes
from .directory import AgentIdentity, Blueprint, Directory, Tenant, User
from .errors import AadstsError, missing_parameter, render
from .jwt_tokens import TokenIssuer, unverified_claims
from .refresh_tokens import GrantStore
from .replication import Replication
from .scopes import ResolvedScope, is_token_exchange, resolve
from .token_minting import Minter
from .user_tokens import interactive_claims, user_not_found

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_USER_FIC = "user_fic"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANTS = (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_USER_FIC,
    GRANT_REFRESH_TOKEN,
    DEVICE_CODE_GRANT,
)


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
    # Graph writes waiting to reach the directory (replication.py).
    replication: Replication = field(default_factory=Replication)
    device_codes: DeviceCodes = field(default_factory=DeviceCodes)

    @property
    def authority_host(self) -> str:
        return self.issuer.authority_host

    @property
    def minter(self) -> Minter:
        return Minter(self.issuer, self.token_lifetime_s, self.refresh_in_s)

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
        self.replication.apply_due(self.directory, now=now)
        leg = self.leg_of(tenant_id, form)
        client_id = form.get("client_id") or None
        return self._answer(
            lambda: self._dispatch(tenant_id, form, now), leg, client_id, now, correlation_id
        )

    def start_device_flow(
        self,
        tenant_id: str,
        form: dict[str, str],
        *,
        correlation_id: str | None = None,
        now: float | None = None,
    ) -> TokenResponse:
        """``/{tenant}/oauth2/v2.0/devicecode``: a device code for a public client."""
        now = time.time() if now is None else now
        client_id = form.get("client_id") or None

        def issue() -> dict[str, Any]:
            tenant = self.tenant(tenant_id)
            if not client_id:
                raise missing_parameter("client_id")
            if client_id.lower() not in PUBLIC_CLIENT_IDS:
                raise _unknown_application(client_id, tenant)
            resolve(form.get("scope"), app_only=False)  # a bad scope fails now, as in Entra
            verification_uri = f"{self.authority_host}{DEVICE_LOGIN_PATH}"
            return self.device_codes.issue(
                tenant.tenant_id,
                client_id,
                str(form.get("scope")),
                now=now,
                verification_uri=verification_uri,
            )

        return self._answer(issue, None, client_id, now, correlation_id)

    def _answer(
        self,
        produce: Callable[[], dict[str, Any]],
        leg: str | None,
        client_id: str | None,
        now: float,
        correlation_id: str | None,
    ) -> TokenResponse:
        try:
            body = produce()
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
        if grant == DEVICE_CODE_GRANT:
            return self._device_code(tenant, form, now)
        blueprint = tenant.blueprints.get(client_id.lower())
        agent = tenant.agents.get(client_id.lower())
        if blueprint is None and agent is None:
            raise _unknown_application(client_id, tenant)
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
    def _device_code(self, tenant: Tenant, form: dict[str, str], now: float) -> dict[str, Any]:
        """The device code grant: pending until approved, then the user's token."""
        flow = self.device_codes.redeem(tenant.tenant_id, form, now=now)
        user = tenant.find_user(upn=flow.approved_upn)
        if user is None:
            raise user_not_found(tenant)
        scope = resolve(flow.scope, app_only=False)
        return self.minter.delegated_response(tenant, flow.client_id, user, scope)

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
        claims = token_minting.blueprint_app_claims(bp, acr, scope)
        return self.minter.app_response(tenant, claims)

    def _t1(self, tenant: Tenant, bp: Blueprint, form: dict[str, str], acr: str) -> dict[str, Any]:
        resolve(form.get("scope"), app_only=True)  # a bad scope is reported before fmi_path
        agent = leg_checks.t1_agent(tenant, bp, form)
        return self.minter.app_response(tenant, token_minting.t1_claims(tenant, bp, agent, acr))

    def _agent_app(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        scope = resolve(form.get("scope"), app_only=True)
        exchange = is_token_exchange(form.get("scope"))  # T2: the agent's own exchange token
        claims = token_minting.agent_app_claims(agent, scope, exchange, form)
        return self.minter.app_response(tenant, claims)

    def _obo(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        assertion = leg_checks.obo_assertion(form)
        scope = resolve(form.get("scope"), app_only=False)
        user = leg_checks.obo_user(self.issuer, tenant, agent, assertion, now)
        return self._with_refresh_token(
            tenant,
            agent,
            user,
            scope,
            self.minter.user_response(tenant, agent, user, scope, agent_claims.OBO, form),
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
            self.minter.user_response(tenant, agent, user, scope, agent_claims.OBO, form),
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

    def _user_fic(
        self, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
    ) -> dict[str, Any]:
        authenticate_agent(agent, form, tenant_id=tenant.tenant_id, now=now, issuer=self.issuer)
        leg_checks.check_user_fic(self.issuer, tenant, agent, form, now)
        scope = resolve(form.get("scope"), app_only=False)
        user = leg_checks.agent_user(tenant, agent, form)
        facets = agent_claims.AGENT_USER
        return self.minter.user_response(tenant, agent, user, scope, facets, form)

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
        scope: str | None = None,
    ) -> str:
        """A user token as an interactive sign-in gives (``/_emulator/users/token``);
        ``scope`` (delegated scopes such as ``AgentIdentity.Create.All``) sets
        ``aud`` and ``scp`` instead of ``audience``."""
        self.replication.apply_due(self.directory)
        tenant = self.tenant(tenant_id)
        resolved = resolve(scope, app_only=False) if scope is not None else None
        claims = interactive_claims(tenant, upn, audience, resolved)
        return self.issuer.mint(
            tenant.tenant_id, claims, lifetime_s=lifetime_s or self.token_lifetime_s
        )


def _unknown_application(client_id: str, tenant: Tenant) -> AadstsError:
    """What Entra answers for a client id not (yet) in the tenant's directory."""
    return AadstsError(
        700016,
        f"Application with identifier '{client_id}' was not "
        f"found in the directory '{tenant.tenant_id}'. This can "
        "happen if the application has not been installed by "
        "the administrator of the tenant.",
    )
