"""One-line hints for the AADSTS codes agent identity users meet most.

A hint says what to check or run next; it never repeats the request's values.
"""

from __future__ import annotations

from collections.abc import Iterable

HINTS: dict[int, str] = {
    7000215: "the blueprint client secret is wrong or expired: store the current one with "
    "'agentid-helper secret set --blueprint-app-id <id>' (or fix the secret file/env)",
    7000216: "the request needs a client credential: check the profile's blueprint_credential",
    7002137: "no federated identity credential matches: check the agent identity belongs to "
    "this blueprint (agent_identity_app_id / blueprint_app_id)",
    700211: "no federated identity credential matches the assertion issuer: check the "
    "authority_host and tenant_id of the blueprint",
    65001: "consent is missing: an administrator must grant the agent identity the "
    "requested permissions",
    50034: "the user does not exist in this tenant: check user_upn / user_object_id",
    50013: "the user token must be issued for the agent's blueprint: request "
    "'api://<blueprint app id>/access_agent' (its audience is the blueprint, never the "
    "agent identity)",
    82001: "the agent user is not linked to this agent identity: check the agent user's "
    "identity parent",
    1002012: "app-only tokens need a '/.default' scope, e.g. https://graph.microsoft.com/.default",
    700024: "the client assertion expired or is not yet valid: check the clock "
    "(and that the T1 token is fresh)",
    700016: "the application was not found in the tenant: check the app id and tenant_id",
    90002: "the tenant was not found: check tenant_id and authority_host",
    700027: "the client assertion signature failed: check the certificate matches the "
    "one registered on the blueprint",
}


def hint_for(codes: Iterable[int]) -> str | None:
    """The hint of the first known code, or ``None``."""
    for code in codes:
        hint = HINTS.get(code)
        if hint:
            return hint
    return None
