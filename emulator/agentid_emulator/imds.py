"""An Azure IMDS-shaped managed identity endpoint (``--imds-port``): plain HTTP on 127.0.0.1.

As docs/identity/managed-identities-azure-resources/how-to-use-vm-token.md
(MicrosoftDocs/entra-docs) specifies it::

    GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R
        [&client_id=C | &object_id=O | &msi_res_id=M]
    Metadata: true

answers ``access_token``, ``client_id``, ``expires_in``, ``expires_on``,
``ext_expires_in``, ``not_before``, ``resource``, ``token_type`` (numbers as
strings, as IMDS sends them), and errors as JSON ``error`` /
``error_description`` with IMDS's statuses (400 ``bad_request_102`` without
the ``Metadata: true`` header, 400 ``invalid_request`` for a missing parameter
or an identity it does not have, 405 for anything but GET).

MSAL's ``ManagedIdentityClient`` (and azure-identity) reach it when
``AZURE_POD_IDENTITY_AUTHORITY_HOST`` is the ready file's ``imds_endpoint``
(MSAL 1.39 ``managed_identity.py``: that variable, else 169.254.169.254).

The token of a managed identity for ``api://AzureADTokenExchange`` has ``aud``
= the AAD Token Exchange app id, ``iss`` = its tenant's v2.0 issuer, ``azp`` =
its client id and ``sub`` = ``oid`` = its object id: a blueprint whose
federated identity credential names that issuer and subject accepts it as
``client_assertion`` (agent-on-behalf-of-oauth-flow.md, ``TUAMI``).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .directory import TOKEN_EXCHANGE_AUDIENCE, ManagedIdentity
from .emulator_state import EmulatorState
from .jwt_tokens import TOKEN_EXCHANGE_APP_ID
from .legs import TokenService
from .tcp import no_delay

IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"
# The oldest api-version IMDS's identity endpoint takes (the one MSAL sends).
MIN_API_VERSION = "2018-02-01"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The wire names of the three ways to pick a user-assigned identity.
SELECTORS = ("client_id", "object_id", "msi_res_id")
LEG = "managed_identity"


@dataclass(frozen=True)
class ImdsResponse:
    status: int
    body: dict[str, Any] = field(repr=False)
    client_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class ImdsError(Exception):
    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


def _invalid(description: str) -> ImdsError:
    return ImdsError(400, "invalid_request", description)


def token_audience(resource: str) -> str:
    """The ``aud`` of a managed identity token for ``resource``."""
    bare = resource.removesuffix("/.default")
    if bare.rstrip("/").lower() == TOKEN_EXCHANGE_AUDIENCE.lower():
        return TOKEN_EXCHANGE_APP_ID
    return bare


@dataclass
class ImdsService:
    """Sans-IO: (method, path, query, headers) in, an IMDS-shaped response out."""

    tokens: TokenService

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], *, now: float | None = None
    ) -> ImdsResponse:
        try:
            mi, body = self._token(method, target, headers, now)
        except ImdsError as err:
            return ImdsResponse(
                err.status,
                {"error": err.error, "error_description": err.description},
                headers=err.headers,
            )
        return ImdsResponse(200, body, mi.client_id)

    def _token(
        self, method: str, target: str, headers: Mapping[str, str], now: float | None
    ) -> tuple[ManagedIdentity, dict[str, Any]]:
        parts = urlsplit(target)
        if parts.path.rstrip("/") != IMDS_TOKEN_PATH:
            raise ImdsError(404, "not_found", f"no route for {parts.path}")
        if method != "GET":
            raise ImdsError(
                405,
                "invalid_request",
                "The request method is not supported: use GET.",
                {"Allow": "GET"},
            )
        # An SSRF mitigation: IMDS refuses requests without this exact header.
        metadata = [v for k, v in headers.items() if k.lower() == "metadata"]
        if metadata != ["true"]:
            raise ImdsError(400, "bad_request_102", "Required metadata header not specified")
        query = parse_qs(parts.query, keep_blank_values=True)
        if any(len(values) > 1 for values in query.values()):
            raise _invalid("A parameter is included more than once.")
        params = {k: v[0] for k, v in query.items()}
        self._check_api_version(params.get("api-version"))
        resource = params.get("resource")
        if not resource:
            raise _invalid("Required audience parameter not specified")
        mi = self._identity(params)
        return mi, self._issue(mi, resource, now)

    @staticmethod
    def _check_api_version(version: str | None) -> None:
        if not version:
            raise _invalid("Required api-version parameter not specified")
        # ISO dates compare as strings.
        if not _API_VERSION.match(version) or version < MIN_API_VERSION:
            raise _invalid(f"Invalid api-version {version!r}: use {MIN_API_VERSION} or later.")

    def _identity(self, params: dict[str, str]) -> ManagedIdentity:
        chosen = [(name, params[name]) for name in SELECTORS if params.get(name)]
        if len(chosen) > 1:
            raise _invalid("Only one of client_id, object_id and msi_res_id may be given.")
        identities = self.tokens.directory.managed_identities()
        if not chosen:
            if len(identities) == 1:  # a VM with one user-assigned identity uses it
                return identities[0]
            if not identities:
                raise _invalid("Identity not found")
            raise _invalid(
                "Multiple user assigned identities exist, please specify the "
                "clientId / resourceId of the identity in the token request"
            )
        name, value = chosen[0]
        for mi in identities:
            own = {
                "client_id": mi.client_id,
                "object_id": mi.object_id,
                "msi_res_id": mi.resource_id,
            }[name]
            if own and own.lower() == value.lower():
                return mi
        raise _invalid("Identity not found")

    def _issue(self, mi: ManagedIdentity, resource: str, now: float | None) -> dict[str, Any]:
        issued = int(time.time() if now is None else now)
        lifetime = self.tokens.token_lifetime_s
        claims: dict[str, Any] = {
            "aud": token_audience(resource),
            "azp": mi.client_id,
            "azpacr": "2",
            "idtyp": "app",
            "oid": mi.object_id,
            "sub": mi.object_id,
        }
        if mi.resource_id:
            claims["xms_mirid"] = mi.resource_id
        token = self.tokens.issuer.mint(mi.tenant_id, claims, lifetime_s=lifetime, now=issued)
        return {
            "access_token": token,
            "client_id": mi.client_id,
            "expires_in": str(lifetime),
            "expires_on": str(issued + lifetime),
            "ext_expires_in": str(lifetime),
            "not_before": str(issued),
            "resource": resource,
            "token_type": "Bearer",
        }


class _ImdsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # IMDS answers with "Server: IMDS/<version>"; clients may look for the prefix.
    server_version = "IMDS/agentid-helper-emulator"
    sys_version = ""
    timeout = 30.0
    server: ImdsHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one structured line per request instead

    def do_GET(self) -> None:
        start = time.monotonic()
        state = self.server.state
        if self.command != "GET":
            self.close_connection = True  # any body is left unread
        resp = self.server.service.handle(self.command, self.path, dict(self.headers.items()))
        state.stats.record(leg=LEG, client_id=resp.client_id, ok=resp.status == 200)
        raw = json.dumps(resp.body).encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
        # The path only: never the query string, never the token.
        state.log(
            method=self.command,
            path=urlsplit(self.path).path,
            leg=LEG,
            client_id=resp.client_id,
            status=resp.status,
            duration_ms=round((time.monotonic() - start) * 1000, 2),
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET


class ImdsHTTPServer(ThreadingHTTPServer):
    """Plain HTTP on 127.0.0.1, like IMDS's link-local address on a VM."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, state: EmulatorState, service: ImdsService) -> None:
        self.state = state
        self.service = service
        super().__init__(("127.0.0.1", port), _ImdsHandler)

    @property
    def endpoint(self) -> str:
        """What ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` must be set to."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        no_delay(sock)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.state.log(event="connection_error", error=type(sys.exc_info()[1]).__name__)


def serve_in_thread(server: ImdsHTTPServer) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="emulator-imds",
        daemon=True,
    )
    thread.start()
    return thread
