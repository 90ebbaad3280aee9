"""Per-leg validation of the token endpoint: the checks Entra makes before it
answers, each failing with its AADSTS error (errors.py).

Client authentication itself is client_auth.py; this is what each leg asks of
the rest of the form: T1's fmi_path and scope, the OBO assertion (a user token
of ours, for the agent's blueprint), the user_fic credential and user. The
order of the checks is the order of the errors a caller sees; keep it.
"""

from __future__ import annotations

import jwt

from .client_auth import verify_exchange_token
from .directory import AgentIdentity, Blueprint, Tenant, User
from .errors import AadstsError, missing_parameter
from .jwt_tokens import TokenIssuer
from .scopes import is_token_exchange
from .user_tokens import blueprint_audiences, user_not_found


def t1_agent(tenant: Tenant, bp: Blueprint, form: dict[str, str]) -> AgentIdentity:
    """The agent a T1 request names (fmi_path): one of this blueprint's, for the
    exchange scope."""
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
    return agent


def obo_assertion(form: dict[str, str]) -> str:
    """The user token of an OBO request, with ``requested_token_use=on_behalf_of``."""
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
    return assertion


def obo_user(
    issuer: TokenIssuer, tenant: Tenant, agent: AgentIdentity, assertion: str, now: float
) -> User:
    """The signed-in user of an OBO assertion: our signature, in its valid time,
    our issuer, for the agent's blueprint, a user token, a user we know."""
    try:
        claims = issuer.verify(assertion, now=now)
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
    if claims.get("iss") != issuer.issuer(tenant.tenant_id):
        raise AadstsError(50013, f"Assertion contains an invalid issuer '{claims.get('iss')}'.")
    check_obo_audience(agent, str(claims.get("aud", "")))
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


def check_obo_audience(agent: AgentIdentity, aud: str) -> None:
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


def check_user_fic(
    issuer: TokenIssuer, tenant: Tenant, agent: AgentIdentity, form: dict[str, str], now: float
) -> None:
    """The user_fic credential is this agent's exchange token (T2), and a user is named."""
    fic = form.get("user_federated_identity_credential")
    if not fic:
        raise missing_parameter("user_federated_identity_credential")
    claims = verify_exchange_token(
        fic,
        issuer=issuer,
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
    if not form.get("username") and not form.get("user_id"):
        raise missing_parameter("username")


def agent_user(tenant: Tenant, agent: AgentIdentity, form: dict[str, str]) -> User:
    """The agent's user a user_fic request names (by UPN, else object id)."""
    upn, oid = form.get("username"), form.get("user_id")
    user = tenant.find_user(upn=upn) if upn else tenant.find_user(object_id=oid)
    if user is None or user.agent_identity_app_id != agent.app_id:
        raise user_not_found(tenant)
    return user
