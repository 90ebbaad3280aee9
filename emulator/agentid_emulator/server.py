"""HTTP I/O: a threaded HTTPS server on 127.0.0.1 routing to discovery, JWKS,
the token and device code endpoints (sans-IO ``TokenService``), Microsoft
Graph beta under ``/graph`` (sans-IO ``graph_routes``) and the loopback admin
API (sans-IO ``admin_routes``); what the handlers share is ``EmulatorState``.

One JSON log line per request goes to stderr (method, path, leg, client_id,
status, AADSTS code, duration): never a form body, secret, assertion or token.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import re
import socket
import ssl
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from .admin_routes import admin_reply
from .emulator_state import EmulatorState
from .errors import AadstsError, render
from .faults import Fault
from .graph_routes import graph_reply
from .tcp import no_delay

MAX_BODY = 1 << 20
IDLE_TIMEOUT_S = 30.0
_TENANT = r"(?P<tenant>[A-Za-z0-9._-]+)"
_DISCOVERY = re.compile(rf"^/{_TENANT}/v2\.0/\.well-known/openid-configuration$")
_JWKS = re.compile(rf"^/{_TENANT}/discovery/v2\.0/keys$")
_TOKEN = re.compile(rf"^/{_TENANT}/oauth2/v2\.0/token$")
_DEVICE_CODE = re.compile(rf"^/{_TENANT}/oauth2/v2\.0/devicecode$")
GRAPH_PREFIX = "/graph"


def _basic_auth(header: str | None, form: dict[str, str]) -> dict[str, str]:
    """client_secret_basic: credentials in the Authorization header (form wins)."""
    if not header or not header.lower().startswith("basic "):
        return {}
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return {}
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return {}
    out = {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(secret)}
    return {k: v for k, v in out.items() if not form.get(k)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentid-helper-emulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    server: EmulatorHTTPServer

    # -- plumbing ---------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        pass  # replaced by one structured line per request

    def _state(self) -> EmulatorState:
        return self.server.state

    def _send(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        if isinstance(body, str):
            raw, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            raw, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store, no-cache")
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
        self._status = status

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(
                413 if length > MAX_BODY else 400,
                {"error": "invalid_request", "error_description": "bad Content-Length"},
                {"Connection": "close"},
            )
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        start = time.monotonic()
        self._status = 0
        self._log: dict[str, Any] = {}
        parts = urlsplit(self.path)
        path, self._query = parts.path, parts.query
        try:
            self._route(path)
        finally:
            self._state().log(
                method=self.command,
                path=path,
                status=self._status,
                duration_ms=round((time.monotonic() - start) * 1000, 2),
                **self._log,
            )

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET

    # -- routes -----------------------------------------------------------------
    def _route(self, path: str) -> None:
        state = self._state()
        if path.startswith("/_emulator/"):
            self._admin(path)
            return
        if path.startswith(GRAPH_PREFIX + "/"):
            self._graph(path[len(GRAPH_PREFIX) :])
            return
        if match := _TOKEN.match(path) or _DEVICE_CODE.match(path):
            if self.command != "POST":
                self._send(
                    405,
                    {"error": "invalid_request", "error_description": "use POST"},
                    {"Allow": "POST"},
                )
                return
            self._token(match["tenant"], device_code=_DEVICE_CODE.match(path) is not None)
            return
        tenant_match = _DISCOVERY.match(path) or _JWKS.match(path)
        if tenant_match and self.command in ("GET", "HEAD"):
            tenant_id = tenant_match["tenant"]
            try:
                tenant = state.service.tenant(tenant_id)
            except AadstsError as err:
                self._error(err)
                return
            if _JWKS.match(path):
                self._send(200, state.service.issuer.jwks())
            else:
                self._send(200, state.discovery(tenant.tenant_id))
            return
        self._send(404, {"error": "not_found", "error_description": f"no route for {path}"})

    def _error(self, err: AadstsError) -> None:
        rendered = render(
            err,
            now=time.time(),
            correlation_id=self.headers.get("client-request-id"),
            authority_host=self._state().service.authority_host,
        )
        self._log["aadsts"] = err.code
        self._send(rendered.status, rendered.body, rendered.headers)

    def _token(self, tenant_id: str, *, device_code: bool = False) -> None:
        state = self._state()
        raw = self._read_body()
        if raw is None:
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form: dict[str, str] = {}
        if ctype == "application/x-www-form-urlencoded":
            for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
                form.setdefault(key, value)  # first occurrence wins
            form.update(_basic_auth(self.headers.get("Authorization"), form))
        leg, client_id = state.service.leg_of(tenant_id, form), form.get("client_id") or None
        self._log.update(leg=leg, client_id=client_id, aadsts=None)
        fault = state.faults.take()
        if fault is not None and self._apply_fault(fault):
            state.stats.record(leg=leg, client_id=client_id, ok=False)
            return
        if ctype != "application/x-www-form-urlencoded":
            state.stats.record(leg=leg, client_id=client_id, ok=False)
            self._error(
                AadstsError(
                    900144,
                    "The request body must contain the following "
                    "parameter: 'grant_type'. (Content-Type must be "
                    "application/x-www-form-urlencoded.)",
                )
            )
            return
        correlation = self.headers.get("client-request-id")
        if device_code:
            resp = state.service.start_device_flow(tenant_id, form, correlation_id=correlation)
        else:
            resp = state.service.handle(tenant_id, form, correlation_id=correlation)
        state.stats.record(leg=leg, client_id=client_id, ok=resp.status == 200)
        if resp.aadsts:
            self._log["aadsts"] = resp.aadsts
        self._send(resp.status, resp.body, resp.headers)

    def _apply_fault(self, fault: Fault) -> bool:
        """Delay and/or fail this token request; True if it was answered (or dropped)."""
        self._log["fault"] = True
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.outage:
            self._log["outage"] = True
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.status is None:
            return False
        headers = {}
        if fault.retry_after_s is not None:
            headers["Retry-After"] = str(fault.retry_after_s)
        if fault.status == 429:
            err = AadstsError(
                90055,
                "TenantThrottlingError - There are too many incoming requests. Try again later.",
                status=429,
            )
        else:
            err = AadstsError(
                90033,
                "A transient error has occurred. Please try again.",
                error="temporarily_unavailable",
                status=fault.status,
            )
        err.headers.update(headers)
        self._error(err)
        return True

    # -- Graph --------------------------------------------------------------------
    def _graph(self, path: str) -> None:
        """Microsoft Graph beta (``{graph_endpoint}/beta/...``); never logs a header."""
        state = self._state()
        raw = self._read_body()
        if raw is None:
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = graph_reply(state.graph, self.command, path, self._query, headers, raw)
        state.stats.record_graph(ok=reply.status < 400)
        if reply.status >= 400 and reply.body is not None:
            self._log["graph_error"] = reply.body["error"]["code"]
        if reply.body is None:
            self._send_empty(reply.status, reply.headers)
        else:
            self._send(reply.status, reply.body, reply.headers)

    def _send_empty(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._status = status

    # -- admin --------------------------------------------------------------------
    def _admin(self, path: str) -> None:
        if not self.server.is_loopback(self.client_address[0]):
            self._send(
                403,
                {"error": "forbidden", "error_description": "admin endpoints are loopback only"},
            )
            return
        raw = self._read_body()
        if raw is None:
            return
        reply = admin_reply(self._state(), self.command, path, raw)
        if isinstance(reply, AadstsError):
            self._error(reply)
        else:
            self._send(reply.status, reply.body)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer speaking TLS; the handshake runs in the request thread."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, port: int, state: EmulatorState, cert_file: Path, key_file: Path) -> None:
        self.state = state
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(cert_file, key_file)
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        no_delay(sock)
        # Handshake lazily in the handler thread so a slow client never blocks accept().
        return self._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    @staticmethod
    def is_loopback(host: str) -> bool:
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # TLS failures, resets and idle timeouts are the client's business: log, don't trace.
        self.state.log(event="connection_error", error=type(exc).__name__)
