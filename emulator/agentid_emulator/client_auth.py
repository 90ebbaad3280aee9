"""Client authentication at the token endpoint, as Entra checks it.

- Blueprints authenticate with a client secret, a certificate-signed client
  assertion (header ``x5t`` / ``x5t#S256`` names a registered certificate;
  ``iss`` = ``sub`` = client_id; ``aud`` = the token endpoint) or a federated
  assertion (``iss``/``sub``/``aud`` match a federated identity credential).
- Agent identities have no credential of their own: their client assertion is
  a T1 minted by this emulator for exactly that agent.

Every failure raises the AADSTS error Entra gives; messages carry identifiers
only, never the secret or assertion.
"""

from __future__ import annotations

import hmac
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .directory import TOKEN_EXCHANGE_AUDIENCE, AgentIdentity, Blueprint, FederatedCredential
from .errors import AadstsError, missing_parameter
from .jwt_tokens import (
    TOKEN_EXCHANGE_APP_ID,
    TokenIssuer,
    fmi_subject,
    unverified_claims,
    unverified_header,
)

JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _no_credential() -> AadstsError:
    return AadstsError(
        7000216,
        "'client_assertion', 'client_secret' or 'request' is "
        "required for the 'client_credentials' grant type.",
    )


def _assertion(form: dict[str, str]) -> str | None:
    assertion = form.get("client_assertion")
    if not assertion:
        return None
    assertion_type = form.get("client_assertion_type")
    if not assertion_type:
        raise missing_parameter("client_assertion_type")
    if assertion_type != JWT_BEARER_ASSERTION_TYPE:
        raise AadstsError(
            50027,
            f"Invalid client_assertion_type '{assertion_type}'; "
            f"expected '{JWT_BEARER_ASSERTION_TYPE}'.",
        )
    return assertion


def _verify_signed(
    token: str, key: rsa.RSAPublicKey, algorithms: tuple[str, ...], now: float, what: str
) -> dict[str, Any]:
    try:
        return TokenIssuer.verify_with(token, key, now=now, algorithms=algorithms)
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        raise AadstsError(
            700024,
            f"{what} is not within its valid time range. Ensure that the assertion is not expired.",
        ) from None
    except jwt.InvalidSignatureError:
        raise AadstsError(700027, f"{what} failed signature validation.") from None
    except jwt.PyJWTError:
        raise AadstsError(50027, f"JWT token is invalid or malformed ({what}).") from None


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)]


def authenticate_blueprint(
    blueprint: Blueprint,
    form: dict[str, str],
    *,
    now: float,
    token_endpoint: str,
    authority_host: str,
    issuer: TokenIssuer,
) -> str:
    """Check the blueprint's credential; returns its kind: secret | certificate | federated."""
    secret = form.get("client_secret")
    assertion = _assertion(form)
    if secret:
        if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in blueprint.secrets):
            raise AadstsError(
                7000215,
                "Invalid client secret provided. Ensure the secret "
                "being sent in the request is the client secret value, "
                "not the client secret ID, for a secret added to app "
                f"'{blueprint.app_id}'.",
            )
        return "secret"
    if not assertion:
        raise _no_credential()
    header = unverified_header(assertion)
    if not header:
        raise AadstsError(50027, "JWT token is invalid or malformed (client assertion).")
    thumbprint = header.get("x5t#S256") or header.get("x5t")
    if thumbprint:
        return _check_certificate_assertion(
            blueprint, assertion, str(thumbprint), now=now, token_endpoint=token_endpoint
        )
    _check_federated_assertion(
        blueprint, assertion, now=now, authority_host=authority_host, issuer=issuer
    )
    return "federated"


def _check_certificate_assertion(
    blueprint: Blueprint, assertion: str, thumbprint: str, *, now: float, token_endpoint: str
) -> str:
    # MSAL pads its base64url thumbprints; JOSE says unpadded: accept both.
    key = blueprint.certificates.get(thumbprint.rstrip("=").replace("+", "-").replace("/", "_"))
    if key is None:
        raise AadstsError(
            700027,
            "The certificate with identifier used to sign the client "
            "assertion is not registered on application. [Reason - The "
            f"key was not found., Thumbprint of key used by client: "
            f"'{thumbprint}']",
        )
    claims = _verify_signed(assertion, key, ("RS256", "PS256"), now, "Client assertion")
    if claims.get("iss") != blueprint.app_id or claims.get("sub") != blueprint.app_id:
        raise AadstsError(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
            error="invalid_client",
            status=401,
        )
    # Entra takes its v2.0 or v1.0 token endpoint as the assertion audience.
    accepted = {token_endpoint.lower(), token_endpoint.lower().replace("/oauth2/v2.0/", "/oauth2/")}
    if not accepted & {a.lower() for a in _audiences(claims)}:
        raise AadstsError(
            700027,
            "Client assertion contains an invalid audience: it must "
            f"be the token endpoint '{token_endpoint}'.",
        )
    return "certificate"


def _federated_issuer(cred: FederatedCredential, authority_host: str) -> str:
    # Relative issuers name the emulator's own workload-identity issuer.
    return authority_host + cred.issuer if cred.issuer.startswith("/") else cred.issuer


def _federation_audiences(audiences: list[str]) -> set[str]:
    # An Entra-issued token (a managed identity's, from IMDS) for
    # api://AzureADTokenExchange carries the app id of "AAD Token Exchange" as
    # aud; Entra matches it to a credential whose audience is the URI.
    out = set(audiences)
    if TOKEN_EXCHANGE_APP_ID in out:
        out.add(TOKEN_EXCHANGE_AUDIENCE)
    return out


def _check_federated_assertion(
    blueprint: Blueprint, assertion: str, *, now: float, authority_host: str, issuer: TokenIssuer
) -> None:
    presented = unverified_claims(assertion)
    iss = presented.get("iss")
    creds = [
        c for c in blueprint.federated_credentials if _federated_issuer(c, authority_host) == iss
    ]
    if not creds:
        raise AadstsError(
            700211,
            f"No matching federated identity record found for presented assertion issuer '{iss}'.",
        )
    key = creds[0].public_key or issuer.key.public_key()
    claims = _verify_signed(assertion, key, ("RS256",), now, "Federated assertion")
    audiences = _audiences(claims)
    creds = [c for c in creds if c.audience in _federation_audiences(audiences)]
    if not creds:
        raise AadstsError(
            700212,
            "No matching federated identity record found for presented "
            f"assertion audience '{', '.join(audiences)}'.",
        )
    if not any(c.subject == claims.get("sub") for c in creds):
        raise AadstsError(
            700213,
            "No matching federated identity record found for presented "
            f"assertion subject '{claims.get('sub')}'.",
            error="invalid_client",
            status=401,
        )


def verify_exchange_token(
    token: str, *, issuer: TokenIssuer, tenant_id: str, now: float, what: str
) -> dict[str, Any]:
    """Signature, time, issuer and audience of a T1/T2 minted by this emulator."""
    if not unverified_header(token):
        raise AadstsError(50027, f"JWT token is invalid or malformed ({what}).")
    try:
        claims = issuer.verify(token, now=now)
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        raise AadstsError(
            700024,
            f"{what} is not within its valid time range. Ensure that the assertion is not expired.",
        ) from None
    except jwt.InvalidSignatureError:
        raise AadstsError(700027, f"{what} failed signature validation.") from None
    except jwt.PyJWTError:
        raise AadstsError(50027, f"JWT token is invalid or malformed ({what}).") from None
    if claims.get("iss") != issuer.issuer(tenant_id):
        raise AadstsError(
            700211,
            "No matching federated identity record found for presented "
            f"assertion issuer '{claims.get('iss')}'.",
        )
    if TOKEN_EXCHANGE_APP_ID not in _audiences(claims):
        raise AadstsError(
            700212,
            "No matching federated identity record found for presented "
            f"assertion audience '{claims.get('aud')}'.",
        )
    return claims


def authenticate_agent(
    agent: AgentIdentity, form: dict[str, str], *, tenant_id: str, now: float, issuer: TokenIssuer
) -> dict[str, Any]:
    """The agent's client assertion must be a T1 for this very agent; returns its claims."""
    if form.get("client_secret"):
        raise AadstsError(
            7000215,
            "Invalid client secret provided: agent identity "
            f"'{agent.app_id}' has no password credentials.",
        )
    assertion = _assertion(form)
    if not assertion:
        raise _no_credential()
    claims = verify_exchange_token(
        assertion, issuer=issuer, tenant_id=tenant_id, now=now, what="Client assertion"
    )
    expected = fmi_subject(tenant_id, agent.blueprint_app_id, agent.app_id)
    if claims.get("sub") != expected:
        raise AadstsError(
            7002137,
            "No matching federated identity record found for presented "
            f"assertion subject '{claims.get('sub')}'. The assertion "
            f"is not a blueprint token for agent '{agent.app_id}'.",
        )
    return claims
