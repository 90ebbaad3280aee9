"""Tests for api.py: routes, body validation and error mapping with fake broker/config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentid_daemon.api import Api, ApiState
from agentid_daemon.errors import (
    ConfigurationError,
    IdentityProviderError,
    InvalidRequest,
    UnknownProfile,
)
from agentid_daemon.metrics import Metrics
from agentid_daemon.protocol import Response

TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."


@dataclass
class FakeReq:
    profile: str | None
    mode: str
    fields: dict[str, Any] = field(repr=False)


class FakeConfig:
    default_profile = "bot"
    profiles = {"bot": {"mode": "AutonomousApp"}, "obo": {"mode": "OBO"}}

    def resolve(self, fields: dict[str, Any]) -> FakeReq:
        name = fields.get("profile", self.default_profile)
        if name not in self.profiles:
            raise UnknownProfile(f"no profile named {name!r}")
        if fields.get("tenant_id") == "bad":
            raise InvalidRequest("tenant_id must be a GUID or a domain name")
        return FakeReq(name, fields.get("mode", self.profiles[name]["mode"]), dict(fields))


@dataclass
class FakeServed:
    source: str = "identity_provider"

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_on": 2,
            "refresh_on": 1,
            "scope": "s",
            "mode": "AutonomousApp",
            "source": self.source,
        }


class FakeBroker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.error: Exception | None = None

    async def get_token(self, req, *, min_validity_s=300, force_refresh=False):
        self.calls.append(("get", (req, min_validity_s, force_refresh)))
        if self.error:
            raise self.error
        return FakeServed()

    def invalidate(self, req) -> bool:
        self.calls.append(("invalidate", req))
        return True

    def flush(self) -> int:
        self.calls.append(("flush", None))
        return 3

    def status(self) -> list[dict[str, Any]]:
        return [{"key": "AutonomousApp x", "state": "valid"}]


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def api(broker: FakeBroker) -> Api:
    state = ApiState(
        broker=broker, metrics=Metrics(), config=FakeConfig(), config_path="/c.toml", version="9"
    )
    state.listening = True
    state.socket_path = "/run/s.sock"
    return Api(state)


async def call(api: Api, method: str, path: str, body: Any = None) -> tuple[Response, Any]:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    resp = await api.handle_request(method, path, [], raw)
    parsed = (
        json.loads(resp.body) if resp.body and resp.headers[0][1] == "application/json" else None
    )
    return resp, parsed


async def test_post_token(api: Api, broker: FakeBroker) -> None:
    resp, body = await call(api, "POST", "/v1/token", {"profile": "bot", "min_validity_s": 10})
    assert resp.status == 200 and body["access_token"] == TOKEN
    kind, (req, min_validity, force) = broker.calls[0]
    assert kind == "get" and req.profile == "bot" and min_validity == 10.0 and force is False
    assert "min_validity_s" not in req.fields


async def test_post_token_defaults_and_nulls(api: Api, broker: FakeBroker) -> None:
    resp, _ = await call(api, "POST", "/v1/token", {"profile": None, "force_refresh": True})
    assert resp.status == 200
    _, (req, min_validity, force) = broker.calls[0]
    assert req.profile == "bot" and min_validity == 300.0 and force is True
    resp, _ = await call(api, "POST", "/v1/token")  # empty body: default profile
    assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "must be a JSON object, not array"),
        ({"profil": "bot"}, "unknown field(s): 'profil'"),
        ({"profile": 3}, "'profile' must be a string, not number"),
        ({"scope": ["a", 1]}, "'scope' must be a string or an array"),
        ({"min_validity_s": "10"}, "'min_validity_s' must be a number"),
        ({"min_validity_s": True}, "'min_validity_s' must be a number"),
        ({"min_validity_s": -1}, "between 0 and 3600"),
        ({"min_validity_s": 99999}, "between 0 and 3600"),
        ({"force_refresh": "yes"}, "'force_refresh' must be a boolean"),
        ({"tenant_id": "bad"}, "tenant_id must be a GUID"),
    ],
)
async def test_post_token_invalid(api: Api, broker: FakeBroker, body: Any, message: str) -> None:
    resp, parsed = await call(api, "POST", "/v1/token", body)
    assert resp.status == 400
    assert parsed["error"] == "invalid_request"
    assert message in parsed["error_description"]
    assert set(parsed) == {"error", "error_description", "aadsts_codes", "correlation_id", "hint"}
    assert broker.calls == []


async def test_invalid_json_never_echoes_body(api: Api) -> None:
    resp, parsed = await call(api, "POST", "/v1/token", b'{"user_token": "' + TOKEN.encode() + b'"')
    assert resp.status == 400 and TOKEN not in parsed["error_description"]


async def test_unknown_profile_404(api: Api) -> None:
    resp, parsed = await call(api, "POST", "/v1/token", {"profile": "nope"})
    assert resp.status == 404 and parsed["error"] == "unknown_profile"


async def test_identity_provider_errors(api: Api, broker: FakeBroker) -> None:
    broker.error = IdentityProviderError(
        "AADSTS7000215: invalid secret", aadsts_codes=(7000215,), correlation_id="c-1", leg="t1"
    )
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert resp.status == 502 and parsed["aadsts_codes"] == [7000215]
    assert parsed["correlation_id"] == "c-1"
    broker.error = IdentityProviderError("throttled", transient=True, retry_after_s=4.2)
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert resp.status == 503 and parsed["error"] == "identity_provider_unavailable"
    assert ("retry-after", "5") in resp.headers
    broker.error = ConfigurationError("blueprint secret file /x is unreadable")
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert resp.status == 500 and parsed["error"] == "configuration_error"


async def test_delete_token_and_flush(api: Api, broker: FakeBroker) -> None:
    resp, _ = await call(api, "DELETE", "/v1/token", {"profile": "obo"})
    assert resp.status == 204 and resp.body == b""
    assert broker.calls[-1][0] == "invalidate" and broker.calls[-1][1].profile == "obo"
    resp, parsed = await call(api, "DELETE", "/v1/token", {"force_refresh": True})
    assert resp.status == 400 and "unknown field" in parsed["error_description"]
    resp, _ = await call(api, "POST", "/v1/flush")
    assert resp.status == 204 and broker.calls[-1] == ("flush", None)
    resp, _ = await call(api, "POST", "/v1/flush", {"all": True})
    assert resp.status == 204 and broker.calls[-1] == ("flush", None)
    resp, _ = await call(api, "POST", "/v1/flush", {"profile": "bot"})
    assert resp.status == 204 and broker.calls[-1][0] == "invalidate"
    resp, _ = await call(api, "POST", "/v1/flush", {"all": "yes"})
    assert resp.status == 400


async def test_status(api: Api) -> None:
    resp, body = await call(api, "GET", "/v1/status")
    assert resp.status == 200
    d = body["daemon"]
    assert d["version"] == "9" and d["socket"] == "/run/s.sock" and d["config_path"] == "/c.toml"
    assert d["profiles"] == ["bot", "obo"] and d["default_profile"] == "bot"
    assert isinstance(d["pid"], int) and d["uptime_s"] >= 0
    assert body["entries"] == [{"key": "AutonomousApp x", "state": "valid"}]
    assert TOKEN not in resp.body.decode()


async def test_health_ready_metrics(api: Api) -> None:
    resp, body = await call(api, "GET", "/healthz")
    assert resp.status == 200 and body == {"status": "ok"}
    resp, body = await call(api, "GET", "/readyz")
    assert resp.status == 200 and body["status"] == "ok"
    api.state.listening = False
    resp, body = await call(api, "GET", "/readyz")
    assert resp.status == 503 and body["listener_up"] is False
    api.state.listening, api.state.config = True, None
    resp, body = await call(api, "GET", "/readyz")
    assert resp.status == 503 and body["config_loaded"] is False
    resp = await api.handle_request("GET", "/metrics", [], b"")
    assert resp.status == 200
    assert ("content-type", "text/plain; version=0.0.4; charset=utf-8") in resp.headers
    text = resp.body.decode()
    assert 'agentid_helper_requests_total{endpoint="/healthz",status="200"} 1' in text
    assert 'agentid_helper_requests_total{endpoint="/readyz",status="503"} 2' in text


async def test_not_found_and_method_not_allowed(api: Api) -> None:
    resp, body = await call(api, "GET", "/v2/nothing")
    assert resp.status == 404 and body["error"] == "not_found"
    resp, body = await call(api, "GET", "/v1/token")
    assert resp.status == 405 and ("allow", "DELETE, POST") in resp.headers
    resp, _ = await call(api, "HEAD", "/healthz")
    assert resp.status == 200
    resp, _ = await call(api, "GET", "/healthz?x=1")
    assert resp.status == 200


# ---- request log levels (performance: cache hits are the hot path) ----------


@pytest.fixture
def log_lines() -> Any:
    import io

    from agentid_daemon.logs import configure_logging

    streams: list[io.StringIO] = []

    def configure(level: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level, "json", stream=stream)
        streams.append(stream)
        return stream

    yield configure
    configure_logging("info", "json", stream=io.StringIO())


def _records(stream: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_cache_hits_logged_at_debug_acquisitions_at_info(
    api: Api, broker: FakeBroker, log_lines: Any
) -> None:
    stream = log_lines("info")
    broker.get_token = _served_from("cache")  # type: ignore[method-assign]
    resp, _ = await call(api, "POST", "/v1/token", {"profile": "bot"})
    assert resp.status == 200
    assert [r for r in _records(stream) if r["event"] == "request"] == []

    broker.get_token = _served_from("identity_provider")  # type: ignore[method-assign]
    await call(api, "POST", "/v1/token", {"profile": "bot"})
    (rec,) = [r for r in _records(stream) if r["event"] == "request"]
    assert rec["level"] == "info" and rec["source"] == "identity_provider"
    assert rec["profile"] == "bot" and rec["mode"] == "AutonomousApp" and rec["status"] == 200

    stream = log_lines("debug")
    broker.get_token = _served_from("cache")  # type: ignore[method-assign]
    await call(api, "POST", "/v1/token", {"profile": "bot"})
    (rec,) = [r for r in _records(stream) if r["event"] == "request"]
    # The fields journald users filter on are all there at debug.
    assert rec["level"] == "debug" and rec["source"] == "cache"
    assert {"method", "path", "status", "duration_ms", "profile", "mode"} <= set(rec)


async def test_errors_still_logged_at_info_and_warning(
    api: Api, broker: FakeBroker, log_lines: Any
) -> None:
    stream = log_lines("info")
    await call(api, "POST", "/v1/token", {"profile": "nope"})
    broker.error = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        await call(api, "POST", "/v1/token", {"profile": "bot"})
    broker.error = IdentityProviderError("down", transient=True)
    await call(api, "POST", "/v1/token", {"profile": "bot"})
    levels = [(r["level"], r["status"]) for r in _records(stream) if r["event"] == "request"]
    assert levels == [("info", 404), ("warning", 503)]


def _served_from(source: str) -> Any:
    async def get_token(req: Any, *, min_validity_s: float = 300, force_refresh: bool = False):
        return FakeServed(source)

    return get_token


class FakeSessions:
    def __init__(self) -> None:
        self.registered: list[tuple[dict[str, Any], int]] = []

    async def register(self, fields: dict[str, Any], pid: int) -> dict[str, Any]:
        self.registered.append((fields, pid))
        return {"identity_endpoint": "http://127.0.0.1:9/msi/token",
                "identity_header": "h" * 43, "pid": pid}

    def status(self) -> dict[str, Any]:
        return {"endpoint": None, "sessions": len(self.registered)}


async def test_identity_session_needs_a_peer_pid(api: Api) -> None:
    """Without SO_PEERCRED (not a Unix socket) no process can own the session."""
    api.state.identity_sessions = FakeSessions()
    resp, body = await call(api, "POST", "/v1/identity-sessions", {"profile": "bot"})
    assert resp.status == 400 and "cannot identify the calling process" in body[
        "error_description"]


async def test_identity_session_validates_selection_first(api: Api) -> None:
    sessions = FakeSessions()
    api.state.identity_sessions = sessions
    resp, body = await call(api, "POST", "/v1/identity-sessions", {"profile": "nope"})
    assert resp.status == 404 and body["error"] == "unknown_profile"
    resp, body = await call(api, "POST", "/v1/identity-sessions", {"scope": 3})
    assert resp.status == 400
    assert sessions.registered == []


async def test_identity_session_registers_the_peer(api: Api) -> None:
    """Over a real Unix socket: the session is bound to the connecting process's pid."""
    import os
    import socket

    import trio

    from agentid_daemon.protocol import HttpServer

    sessions = FakeSessions()
    api.state.identity_sessions = sessions
    server = HttpServer(api.handle_request)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    async with trio.open_nursery() as nursery:
        served = trio.SocketStream(trio.socket.from_stdlib_socket(b))
        nursery.start_soon(server.serve_connection, served)
        client = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        body = b'{"profile": "bot"}'
        await client.send_all(b"POST /v1/identity-sessions HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\nConnection: close\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        data = b""
        while chunk := await client.receive_some(65536):
            data += chunk
        await client.aclose()
    assert data.startswith(b"HTTP/1.1 201")
    assert sessions.registered == [({"profile": "bot"}, os.getpid())]


async def test_identity_sessions_absent_is_404(api: Api) -> None:
    resp, _ = await call(api, "POST", "/v1/identity-sessions", {})
    assert resp.status == 404


async def test_token_payload_names_tenant_and_agent(api: Api) -> None:
    from types import SimpleNamespace

    class Config(FakeConfig):
        def resolve(self, fields: dict[str, Any]) -> Any:
            req = super().resolve(fields)
            return SimpleNamespace(profile=req.profile, mode=req.mode, agent=SimpleNamespace(
                tenant_id="t", agent_identity_app_id="a"))

    api.state.config = Config()
    resp, body = await call(api, "POST", "/v1/token", {})
    assert resp.status == 200
    assert (body["tenant_id"], body["agent_identity_app_id"]) == ("t", "a")
