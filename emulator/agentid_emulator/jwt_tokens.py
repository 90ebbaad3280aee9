"""Entra-shaped JWTs: minting (RS256 with ``kid``), JWKS, and verification of
the emulator's own tokens when they come back as assertions.

Claim shapes follow Entra v2.0 access tokens. T1 (the blueprint's exchange
token for an agent) has ``aud`` = the token exchange app id and a ``sub``
naming the agent under its blueprint::

    /eid1/c/pub/t/<b64url tenant GUID bytes>/a/<b64url blueprint GUID bytes>/<agent id>

GUID bytes are Microsoft's little-endian GUID layout (``uuid.UUID.bytes_le``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.types import Options

from .certs import b64url

# The first-party "AAD Token Exchange" application: audience of T1/T2 tokens.
TOKEN_EXCHANGE_APP_ID = "fb60f99c-7a34-4190-8149-302f77469936"
GRAPH_RESOURCE = "https://graph.microsoft.com"


def guid_b64url(guid: str) -> str:
    return b64url(uuid.UUID(guid).bytes_le)


def fmi_subject(tenant_id: str, blueprint_app_id: str, agent_app_id: str) -> str:
    tenant, blueprint = guid_b64url(tenant_id), guid_b64url(blueprint_app_id)
    return f"/eid1/c/pub/t/{tenant}/a/{blueprint}/{agent_app_id}"


def _jwk_int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def unverified_header(token: str) -> dict[str, Any]:
    try:
        return dict(jwt.get_unverified_header(token))
    except jwt.PyJWTError:
        return {}


def unverified_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError, TypeError):
        return {}


@dataclass
class TokenIssuer:
    """Signs tokens for every tenant with one RSA key (``kid`` = its thumbprint)."""

    authority_host: str
    key: rsa.RSAPrivateKey = field(repr=False)
    kid: str = ""
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.kid:
            numbers = self.key.public_key().public_numbers()
            self.kid = b64url(hashlib.sha256(f"{numbers.n}:{numbers.e}".encode()).digest())[:27]

    def issuer(self, tenant_id: str) -> str:
        return f"{self.authority_host}/{tenant_id}/v2.0"

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _jwk_int(numbers.n),
                    "e": _jwk_int(numbers.e),
                    "issuer": f"{self.authority_host}/{{tenantid}}/v2.0",
                }
            ]
        }

    def _uti(self) -> str:
        with self._lock:
            self._counter += 1
            counter = self._counter
        return b64url(uuid.uuid4().bytes[:12] + counter.to_bytes(4, "big"))

    def mint(
        self,
        tenant_id: str,
        claims: dict[str, Any],
        *,
        lifetime_s: int,
        now: float | None = None,
        issuer: str | None = None,
    ) -> str:
        """Sign ``claims`` plus the standard ones (iss, tid, iat, nbf, exp, uti, ver)."""
        issued = int(now if now is not None else time.time())
        body = {
            "iss": issuer or self.issuer(tenant_id),
            "tid": tenant_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_s,
            "uti": self._uti(),
            "ver": "2.0",
            **claims,
        }
        return jwt.encode(
            body, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"}
        )

    def verify(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """Check signature and time of one of our own tokens; audience is the caller's job.

        Raises ``jwt.ExpiredSignatureError`` / ``jwt.ImmatureSignatureError`` for time,
        ``jwt.InvalidSignatureError`` / ``jwt.DecodeError`` otherwise.
        """
        header = unverified_header(token)
        if header.get("kid") != self.kid:
            raise jwt.InvalidSignatureError("unknown signing key")
        return self.verify_with(token, self.key.public_key(), now=now)

    @staticmethod
    def verify_with(
        token: str,
        key: rsa.RSAPublicKey,
        *,
        now: float | None = None,
        algorithms: tuple[str, ...] = ("RS256",),
    ) -> dict[str, Any]:
        options: Options = {
            "verify_aud": False,
            "verify_iss": False,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "require": ["exp"],
        }
        claims = jwt.decode(token, key, algorithms=list(algorithms), options=options)
        # Time checked here (no leeway) so that sans-IO callers can pass their own clock.
        current = time.time() if now is None else now
        try:
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", current))
        except (TypeError, ValueError):
            raise jwt.DecodeError("exp/nbf are not numbers") from None
        if exp <= current:
            raise jwt.ExpiredSignatureError("expired")
        if nbf > current:
            raise jwt.ImmatureSignatureError("not yet valid")
        return dict(claims)
