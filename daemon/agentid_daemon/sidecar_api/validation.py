"""Bearer token validation for ``GET /Validate`` and the authenticated routes.

Microsoft's sidecar validates inbound tokens with Id.Web's JWT bearer handler
(Program.cs: ``AddMicrosoftIdentityWebApi(Configuration.GetSection("AzureAd"))``)
and ``/Validate`` then enforces ``AzureAd:Scopes`` with
``VerifyUserHasAnyAcceptedScope`` (Endpoints/ValidateRequestEndpoints.cs).
Here the same checks are made with PyJWT and cryptography, nothing hand-rolled:

- the signature, against the tenant's JWKS found through OIDC discovery
  (``{Instance}/{TenantId}/v2.0/.well-known/openid-configuration``), fetched
  by :class:`jwt.PyJWKClient` (JWK set cached for an hour; an unknown ``kid``
  refetches once, at most every 30 s: key rollover without a fetch per
  forged token); RS256 only, as Entra signs;
- the issuer: discovery's ``issuer``;
- the audience: ``AzureAd__Audience`` when set, else as Id.Web's
  Resource/RegisterValidAudience.cs: ``ClientId`` for v2.0 tokens,
  ``api://<ClientId>`` for v1.0 ones;
- expiry and not-before, with Microsoft.IdentityModel's default clock skew
  (5 minutes);
- with ``AzureAd__Scopes``: at least one of them in ``scp`` (403 otherwise).

Blocking (urllib, requests): called from a worker thread.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from agentid_client.formats import rfc3339

from ..idp.msal_http import ProviderSession, TrustStore
from .problems import Problem

# Microsoft.IdentityModel TokenValidationParameters.DefaultClockSkew.
CLOCK_SKEW_S = 300
DISCOVERY_TTL_S = 24 * 3600.0
JWKS_LIFESPAN_S = 3600.0
JWKS_COOLDOWN_S = 30.0
FETCH_TIMEOUT_S = 10.0
MAX_TOKEN_CHARS = 16 * 1024
_INVALID = [("www-authenticate", 'Bearer error="invalid_token"')]


@dataclass(frozen=True)
class Authority:
    """Whose tokens are valid: the sidecar profile's tenant and blueprint."""

    authority_host: str
    tenant_id: str
    client_id: str
    ca_bundle: str | None
    audience: str | None = None
    required_scopes: tuple[str, ...] = ()


@dataclass
class _Discovered:
    issuer: str
    jwks: jwt.PyJWKClient
    fetched: float


def unauthorized(detail: str) -> Problem:
    """401 with the header JwtBearer sends for a token it refused."""
    return Problem(401, detail, _INVALID)


def bearer_of(headers: list[tuple[str, str]]) -> str:
    """The token of the request's single ``Authorization: Bearer`` header (401 without)."""
    values = [v for k, v in headers if k == "authorization"]
    if not values:
        raise Problem(
            401, "no Authorization header: send Authorization: Bearer <token>", [
                ("www-authenticate", "Bearer")
            ],
        )  # fmt: skip
    if len(values) > 1:
        raise unauthorized("more than one Authorization header")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise unauthorized(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    return token


class TokenValidator:
    """Validates bearer tokens for an :class:`Authority` (thread-safe)."""

    def __init__(self, trust: TrustStore | None = None) -> None:
        self._trust = trust or TrustStore()
        self._lock = threading.Lock()
        self._discovered: dict[tuple[str, str, str | None], _Discovered] = {}

    def validate(self, token: str, authority: Authority) -> dict[str, Any]:
        """The token's claims once every check passed; :class:`Problem` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise unauthorized("the token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise unauthorized(f"the token's algorithm must be RS256, not {header.get('alg')!r}")
        found = self._discovery(authority)
        try:
            key = found.jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise Problem(503, "cannot fetch the tenant's signing keys (JWKS)") from None
        except jwt.PyJWTError:
            raise unauthorized(
                "the token's signing key (kid) is not one of the tenant's keys"
            ) from None
        audiences = self._audiences(authority, unverified)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=audiences,
                issuer=found.issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            exp = unverified.get("exp")
            when = rfc3339(exp) if isinstance(exp, int | float) else "?"
            raise unauthorized(f"the token expired at {when}") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("the token's signature is invalid") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"the token's audience is not {' or '.join(audiences)}") from None
        except jwt.InvalidIssuerError:
            raise unauthorized(f"the token's issuer is not {found.issuer}") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("the token is not valid yet (nbf/iat)") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"the token is invalid: {type(exc).__name__}") from None
        return claims

    @staticmethod
    def check_scopes(claims: dict[str, Any], required: tuple[str, ...]) -> None:
        """Id.Web's VerifyUserHasAnyAcceptedScope (403 with its message when none is held)."""
        if not required:
            return
        held = set(str(claims.get("scp") or "").split())
        if not held & set(required):
            raise Problem(
                403,
                f"The 'scope' or 'scp' claim does not contain scopes '{' '.join(required)}' "
                "or was not found.",
            )

    @staticmethod
    def _audiences(authority: Authority, claims: dict[str, Any]) -> list[str]:
        if authority.audience:
            return [authority.audience]
        if claims.get("ver") == "2.0":
            return [authority.client_id]
        return [f"api://{authority.client_id}"]

    def _discovery(self, authority: Authority) -> _Discovered:
        key = (authority.authority_host, authority.tenant_id, authority.ca_bundle)
        now = time.monotonic()
        with self._lock:
            found = self._discovered.get(key)
        if found is not None and now - found.fetched < DISCOVERY_TTL_S:
            return found
        trust = self._trust.context(authority.ca_bundle) if authority.ca_bundle else None
        url = (
            f"{authority.authority_host.rstrip('/')}/{authority.tenant_id}"
            "/v2.0/.well-known/openid-configuration"
        )
        try:
            with ProviderSession(trust=trust, read_timeout_s=FETCH_TIMEOUT_S) as session:
                answer = session.get(url, allow_redirects=False)
            document = answer.json() if answer.status_code == 200 else None
        except (OSError, ValueError):
            document = None
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("issuer"), str)
            or not isinstance(document.get("jwks_uri"), str)
            or not document["jwks_uri"].startswith("https://")
        ):
            if found is not None:
                return found  # keep validating with what we had
            raise Problem(503, "cannot read the tenant's OpenID configuration (discovery)")
        context = trust if trust is not None else ssl.create_default_context()
        client = jwt.PyJWKClient(
            document["jwks_uri"],
            lifespan=JWKS_LIFESPAN_S,
            timeout=FETCH_TIMEOUT_S,
            ssl_context=context,
            cooldown_duration=JWKS_COOLDOWN_S,
        )
        found = _Discovered(document["issuer"], client, now)
        with self._lock:
            self._discovered[key] = found
        return found
