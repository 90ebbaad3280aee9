"""A local HTTPS stub of Microsoft Graph: ``GET /v1.0/users`` and ``/v1.0/organization``.

Every request needs ``Authorization: Bearer <jwt>`` that its
:class:`~token_gate.TokenGate` accepts (signature against the emulator's JWKS,
issuer, expiry, audience ``https://graph.microsoft.com``), as Graph checks
it; anything else gets Graph's 401 error body. The gate records the tokens it
accepted, so a test can tell which identity called.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit

from https_server import GatedHTTPSServer, QuietHandler
from tls_certs import ServerTls
from token_gate import TokenGate, TokenRejected

GRAPH_RESOURCE = "https://graph.microsoft.com"
USERS = (
    {
        "id": "5f1c0a7e-0000-4000-8000-000000000001",
        "displayName": "Adele Vance",
        "userPrincipalName": "adele@contoso.example",
    },
    {
        "id": "5f1c0a7e-0000-4000-8000-000000000002",
        "displayName": "Megan Bowen",
        "userPrincipalName": "megan@contoso.example",
    },
)


def _graph_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {}}}


class GraphHandler(QuietHandler):
    protocol_version = "HTTP/1.1"
    server: GraphStub

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        token = self.bearer_or_basic_password()
        if token is None or not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._reply(
                401, _graph_error("InvalidAuthenticationToken", "Access token is empty.")
            )
        try:
            claims = self.server.gate.verify(token)
        except TokenRejected as exc:
            self.server.note_rejection(str(exc))
            return self._reply(401, _graph_error("InvalidAuthenticationToken", str(exc)))
        self.server.note_caller(str(claims.get("appid") or claims.get("azp")))
        if path == "/v1.0/users":
            return self._reply(
                200,
                {
                    "@odata.context": f"{GRAPH_RESOURCE}/v1.0/$metadata#users",
                    "value": list(USERS),
                },
            )
        if path == "/v1.0/organization":
            return self._reply(
                200, {"value": [{"id": claims.get("tid"), "displayName": "Contoso (emulated)"}]}
            )
        self._reply(404, _graph_error("Request_ResourceNotFound", f"no resource {path}"))

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header(
                "WWW-Authenticate",
                'Bearer realm="", authorization_uri='
                '"https://login.microsoftonline.com/common/oauth2/authorize"',
            )
        self.end_headers()
        self.wfile.write(data)


class GraphStub(GatedHTTPSServer):
    """``with GraphStub(tls, gate) as graph: graph.url``; ``callers`` lists app ids."""

    def __init__(self, tls: ServerTls, gate: TokenGate) -> None:
        super().__init__(GraphHandler, tls, gate)
        self._lock = threading.Lock()
        self.callers: list[str] = []
        self.rejections: list[str] = []

    def note_caller(self, app_id: str) -> None:
        with self._lock:
            self.callers.append(app_id)

    def note_rejection(self, reason: str) -> None:
        with self._lock:
            self.rejections.append(reason)
