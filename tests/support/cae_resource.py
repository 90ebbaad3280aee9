"""A local HTTPS stub of a CAE-enabled resource (``GET /cae``).

Like Graph with Continuous Access Evaluation: a bearer token must pass the
:class:`~token_gate.TokenGate` (signature against the emulator's JWKS, issuer,
expiry, audience); a token the identity provider has revoked since it was
issued (the resource learns it from its revocation events; here it asks the
emulator's ``/_emulator/tokens/introspect``) gets a claims challenge::

    401 WWW-Authenticate: Bearer realm="", error="insufficient_claims",
        claims="<base64 of {"access_token": {"nbf": {"essential": true, ...}}}>"

A client that declared the ``cp1`` capability answers it by asking for a new
token with those claims. The stub records what it accepted and challenged
(token digests only, never tokens).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from https_server import GatedHTTPSServer, QuietHandler
from tls_certs import ServerTls
from token_gate import TokenGate, TokenRejected

Introspect = Callable[[str], dict[str, Any]]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def challenge_claims(issued_after: int) -> str:
    """The claims a CAE resource asks for: a token issued after the revocation."""
    claims = {"access_token": {"nbf": {"essential": True, "value": str(issued_after)}}}
    return base64.b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode()


class CaeHandler(QuietHandler):
    protocol_version = "HTTP/1.1"
    server: CaeResource

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._reply(401, {"error": "no bearer token"}, challenge=None)
        token = auth[len("Bearer ") :]
        try:
            claims = self.server.gate.verify(token)
        except TokenRejected as exc:
            return self._reply(401, {"error": str(exc)}, challenge=None)
        if self.server.introspect(token).get("revoked"):
            self.server.note("challenged", token)
            return self._reply(
                401, {"error": "token revoked"}, challenge=challenge_claims(int(time.time()))
            )
        self.server.note("accepted", token)
        self._reply(200, {"xms_cc": claims.get("xms_cc"), "sha256": digest(token)}, challenge=None)

    def _reply(self, status: int, body: dict[str, Any], *, challenge: str | None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            value = (
                'Bearer realm="", authorization_uri='
                '"https://login.microsoftonline.com/common/oauth2/authorize"'
            )
            if challenge is not None:
                value += f', error="insufficient_claims", claims="{challenge}"'
            self.send_header("WWW-Authenticate", value)
        self.end_headers()
        self.wfile.write(data)


class CaeResource(GatedHTTPSServer):
    """``with CaeResource(tls, gate, introspect) as res: res.url + "/cae"``."""

    def __init__(self, tls: ServerTls, gate: TokenGate, introspect: Introspect) -> None:
        super().__init__(CaeHandler, tls, gate)
        self.introspect = introspect
        self._lock = threading.Lock()
        self.accepted: list[str] = []  # sha256 digests
        self.challenged: list[str] = []

    def note(self, what: str, token: str) -> None:
        with self._lock:
            getattr(self, what).append(digest(token))
