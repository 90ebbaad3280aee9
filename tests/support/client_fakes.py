"""A fake daemon for the client's tests: HTTP/1.1 over AF_UNIX in a thread.

The client's test modules import :class:`FakeDaemon` from here; the
``fake_daemon`` fixture is registered for all of them by tests/conftest.py.
A route maps ``(method, path)`` to a callable returning
``(status, json_body_or_None)`` or a raw ``bytes`` response.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socketserver
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

Handler = Callable[[dict[str, Any]], Any]

TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJmYWtlIn0.c2lnbmF0dXJl"  # looks like a JWT; not a real one


IDENTITY_SESSION = {
    "identity_endpoint": "http://127.0.0.1:1/msi/token",
    "identity_header": "fake-identity-header-0123456789abcdef0123456789",
    "pid": 1,
}


def token_body(token: str = TOKEN, expires_in: int = 3600, **extra: Any) -> dict[str, Any]:
    import time

    now = int(time.time())
    body = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_on": now + expires_in,
        "refresh_on": now + expires_in * 2 // 3,
        "scope": "https://graph.microsoft.com/.default",
        "mode": "AutonomousApp",
        "source": "cache",
    }
    body.update(extra)
    return body


def error_body(
    status: int, error: str, description: str, **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {
        "error": error,
        "error_description": description,
        "aadsts_codes": [],
        "correlation_id": None,
        "hint": None,
    }
    body.update(extra)
    return status, body


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


# POST /v1/flush's answer, as the daemon words it (api.Api._post_flush).
FLUSHED = {
    "all": False,
    "profile": "bot",
    "whole_profile": True,
    "dropped": {"resource": 2, "t1": 1},
    "tokens": 3,
    "obo_sessions": 0,
}


class FakeDaemon:
    def __init__(self, path: str):
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/token"): lambda req: (200, token_body()),
            ("POST", "/v1/identity-sessions"): lambda req: (201, IDENTITY_SESSION),
            ("DELETE", "/v1/token"): lambda req: (204, None),
            ("POST", "/v1/flush"): lambda req: (200, FLUSHED),
            ("GET", "/v1/status"): lambda req: (200, {"daemon": {"pid": 1}, "entries": []}),
            ("GET", "/healthz"): lambda req: (200, {"status": "ok"}),
            ("GET", "/readyz"): lambda req: (200, {"status": "ok"}),
        }
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                req = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw": raw,
                    "json": json.loads(raw) if raw else None,
                }
                fake.requests.append(req)
                route = fake.routes.get((self.command, self.path))
                result = route(req) if route else (404, {"error": "not_found"})
                if isinstance(result, bytes):
                    self.wfile.write(result)
                    self.close_connection = True
                    return
                status, body = result
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if status != 204:
                    self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.server = _Server(path, RequestHandler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if os.path.exists(self.path):
            os.unlink(self.path)

    @property
    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/token" and r["method"] == "POST"]


def short_socket_path() -> str:
    """A fresh socket path short enough for AF_UNIX (pytest's tmp paths can be long)."""
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="aidc-"), "d.sock")


@contextlib.contextmanager
def running_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    """A FakeDaemon on a fresh socket, with the client pointed at it (autostart off)."""
    path = short_socket_path()
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", path)
    monkeypatch.setenv("AGENTID_HELPER_NO_AUTOSTART", "1")
    try:
        with FakeDaemon(path) as fake:
            yield fake
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    with running_fake(monkeypatch) as fake:
        yield fake
