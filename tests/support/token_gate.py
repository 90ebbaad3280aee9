"""Bearer-token checks for the fake resource servers (Kubernetes API, git).

A :class:`TokenGate` verifies a JWT the way a real resource server would
(RS256 signature against the issuer's JWKS, ``exp``, ``iss``, ``aud``), records
every token it saw, and can be told to reject specific tokens so tests can
simulate revocation or expiry that the helper does not know about.

Reasons returned for a rejection never contain the token itself.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt


class TokenRejected(Exception):
    """The token is not acceptable; ``str()`` is a reason safe to log."""


@dataclass
class TokenGate:
    jwks: Mapping[str, Any] = field(repr=False)
    issuers: frozenset[str]
    audiences: frozenset[str]
    leeway_s: float = 30.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _seen: list[str] = field(default_factory=list, repr=False)
    _accepted: list[str] = field(default_factory=list, repr=False)
    _rejected: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def from_emulator(cls, info: Mapping[str, Any], *, audience: str | Iterable[str]) -> TokenGate:
        """Build a gate that trusts the emulator described by its ready-file *info*."""
        authority = str(info["authority_host"]).rstrip("/")
        tenant = str(info["tenant_id"])
        ctx = ssl.create_default_context(cafile=str(info["ca_bundle"]))
        issuers = {f"{authority}/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/"}
        try:
            discovery = _get_json(
                f"{authority}/{tenant}/v2.0/.well-known/openid-configuration", ctx
            )
            issuers.add(str(discovery["issuer"]).replace("{tenantid}", tenant))
            jwks_uri = str(discovery.get("jwks_uri") or "")
        except (OSError, ValueError, KeyError):
            jwks_uri = ""
        jwks = _get_json(jwks_uri or f"{authority}/{tenant}/discovery/v2.0/keys", ctx)
        auds = {audience} if isinstance(audience, str) else set(audience)
        return cls(jwks=jwks, issuers=frozenset(issuers), audiences=frozenset(auds))

    # -- checks -------------------------------------------------------------

    def verify(self, token: str, *, record: bool = True) -> dict[str, Any]:
        """Return the claims of a valid token or raise :class:`TokenRejected`.

        ``record=False`` checks a token for a test without counting it as seen.
        """
        with self._lock:
            if record:
                self._seen.append(token)
            if token in self._rejected:
                raise TokenRejected("token revoked by the test")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"malformed token: {type(exc).__name__}") from None
        if header.get("alg") != "RS256":
            raise TokenRejected(f"unexpected alg {header.get('alg')!r}")
        key = self._key_for(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=sorted(self.audiences),
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            # PyJWT messages describe the claim, never echo the token.
            raise TokenRejected(f"{type(exc).__name__}: {exc}") from None
        if claims["iss"] not in self.issuers:
            raise TokenRejected(f"untrusted issuer {claims['iss']!r}")
        if record:
            with self._lock:
                self._accepted.append(token)
        return claims

    def _key_for(self, kid: str | None) -> Any:
        keys = [k for k in self.jwks.get("keys", []) if k.get("kty") == "RSA"]
        if kid is not None:
            keys = [k for k in keys if k.get("kid") == kid]
        if len(keys) != 1:
            raise TokenRejected(f"no unique signing key for kid {kid!r}")
        return jwt.PyJWK.from_dict(keys[0], algorithm="RS256").key

    # -- test controls ------------------------------------------------------

    def reject(self, token: str) -> None:
        with self._lock:
            self._rejected.add(token)

    @property
    def seen(self) -> list[str]:
        with self._lock:
            return list(self._seen)

    @property
    def accepted(self) -> list[str]:
        with self._lock:
            return list(self._accepted)

    @property
    def last_accepted(self) -> str:
        with self._lock:
            if not self._accepted:
                raise AssertionError("the server has not accepted any token yet")
            return self._accepted[-1]


def _get_json(url: str, ctx: ssl.SSLContext) -> dict[str, Any]:
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        return json.loads(resp.read())
