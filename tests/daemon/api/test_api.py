"""Tests for api.py: routes, body validation and error mapping (real config, fake broker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from daemon_fakes import AGENT, TENANT, TOKEN, FakeBroker, FakeSessions, load_api_config

from agentid_daemon.api.routes import Api, ApiState
from agentid_daemon.core.errors import ConfigurationError, IdentityProviderError
from agentid_daemon.core.metrics import Metrics
from agentid_daemon.server.protocol import Response


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def api(broker: FakeBroker, tmp_path: Path) -> Api:
    state = ApiState(
        broker=broker,
        metrics=Metrics(),
        config=load_api_config(tmp_path),
        config_path="/c.toml",
        version="9",
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
    assert resp.status == 200
    assert body["access_token"] == TOKEN
    kind, (req, min_validity, force) = broker.calls[0]
    assert kind == "get"
    assert req.profile == "bot"
    assert min_validity == 10.0
    assert force is False


async def test_post_token_defaults_and_nulls(api: Api, broker: FakeBroker) -> None:
    resp, _ = await call(api, "POST", "/v1/token", {"profile": None, "force_refresh": True})
    assert resp.status == 200
    _, (req, min_validity, force) = broker.calls[0]
    assert req.profile == "bot"
    assert min_validity == 300.0
    assert force is True
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
        ({"tenant_id": "bad"}, "tenant_id is invalid: 'bad' is neither a tenant GUID"),
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
    assert resp.status == 400
    assert TOKEN not in parsed["error_description"]


async def test_unknown_profile_404(api: Api) -> None:
    resp, parsed = await call(api, "POST", "/v1/token", {"profile": "nope"})
    assert resp.status == 404
    assert parsed["error"] == "unknown_profile"


async def test_identity_provider_errors(api: Api, broker: FakeBroker) -> None:
    broker.error = IdentityProviderError(
        "AADSTS7000215: invalid secret", aadsts_codes=(7000215,), correlation_id="c-1", leg="t1"
    )
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert resp.status == 502
    assert parsed["aadsts_codes"] == [7000215]
    assert parsed["correlation_id"] == "c-1"
    broker.error = IdentityProviderError("throttled", transient=True, retry_after_s=4.2)
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert resp.status == 503
    assert parsed["error"] == "identity_provider_unavailable"
    assert ("retry-after", "5") in resp.headers
    assert parsed["next_attempt_in_s"] == 5
    backing_off = IdentityProviderError("Entra unavailable (503)", transient=True)
    backing_off.next_attempt_in_s = 26.2  # the cache's backoff, as the cache reports it
    broker.error = backing_off
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert ("retry-after", "27") in resp.headers
    assert parsed["next_attempt_in_s"] == 27
    broker.error = ConfigurationError("blueprint secret file /x is unreadable")
    resp, parsed = await call(api, "POST", "/v1/token", {})
    assert resp.status == 500
    assert parsed["error"] == "configuration_error"


async def test_delete_token_and_flush(api: Api, broker: FakeBroker) -> None:
    resp, _ = await call(api, "DELETE", "/v1/token", {"profile": "user"})
    assert resp.status == 204
    assert resp.body == b""
    kind, req = broker.calls[-1]
    assert kind == "invalidate"
    assert req.profile == "user"
    resp, parsed = await call(api, "DELETE", "/v1/token", {"force_refresh": True})
    assert resp.status == 400
    assert "unknown field" in parsed["error_description"]
    resp, parsed = await call(api, "POST", "/v1/flush")
    assert resp.status == 200
    assert broker.calls[-1] == ("flush", None)
    # What went: the broker's cached counts before minus after.
    assert parsed["all"] is True
    assert parsed["dropped"] == {"resource": 2, "t1": 1}
    assert parsed["tokens"] == 3
    resp, _ = await call(api, "POST", "/v1/flush", {"all": True})
    assert resp.status == 200
    assert broker.calls[-1] == ("flush", None)
    # A profile alone: every token of the profile; {"all": false}: the default profile's.
    resp, parsed = await call(api, "POST", "/v1/flush", {"profile": "bot"})
    assert resp.status == 200
    assert broker.calls[-1][0] == "flush_profile"
    assert (parsed["profile"], parsed["whole_profile"], parsed["all"]) == ("bot", True, False)
    resp, parsed = await call(api, "POST", "/v1/flush", {"all": False})
    assert broker.calls[-1][0] == "flush_profile"
    assert parsed["profile"] == broker.calls[-1][1].profile
    # More selection than the profile: the selected key only.
    resp, parsed = await call(
        api, "POST", "/v1/flush", {"profile": "bot", "scope": "https://vault.azure.net/.default"}
    )
    assert broker.calls[-1][0] == "invalidate"
    assert parsed["whole_profile"] is False
    resp, _ = await call(api, "POST", "/v1/flush", {"all": "yes"})
    assert resp.status == 400


async def test_status(api: Api) -> None:
    resp, body = await call(api, "GET", "/v1/status")
    assert resp.status == 200
    d = body["daemon"]
    assert d["version"] == "9"
    assert d["socket"] == "/run/s.sock"
    assert d["config_path"] == "/c.toml"
    assert d["profiles"] == ["bot", "obo", "user"]
    assert d["default_profile"] == "bot"
    assert isinstance(d["pid"], int)
    assert d["uptime_s"] >= 0
    assert body["entries"] == [{"key": "AutonomousApp x", "state": "valid"}]
    assert TOKEN not in resp.body.decode()


async def test_health_ready_metrics(api: Api) -> None:
    resp, body = await call(api, "GET", "/healthz")
    assert resp.status == 200
    assert body == {"status": "ok"}
    resp, body = await call(api, "GET", "/readyz")
    assert resp.status == 200
    assert body["status"] == "ok"
    api.state.listening = False
    resp, body = await call(api, "GET", "/readyz")
    assert resp.status == 503
    assert body["listener_up"] is False
    api.state.listening, api.state.config = True, None
    resp, body = await call(api, "GET", "/readyz")
    assert resp.status == 503
    assert body["config_loaded"] is False
    resp = await api.handle_request("GET", "/metrics", [], b"")
    assert resp.status == 200
    assert ("content-type", "text/plain; version=0.0.4; charset=utf-8") in resp.headers
    text = resp.body.decode()
    assert 'agentid_helper_requests_total{endpoint="/healthz",status="200"} 1' in text
    assert 'agentid_helper_requests_total{endpoint="/readyz",status="503"} 2' in text


async def test_not_found_and_method_not_allowed(api: Api) -> None:
    resp, body = await call(api, "GET", "/v2/nothing")
    assert resp.status == 404
    assert body["error"] == "not_found"
    resp, body = await call(api, "GET", "/v1/token")
    assert resp.status == 405
    assert ("allow", "DELETE, POST") in resp.headers
    resp, _ = await call(api, "HEAD", "/healthz")
    assert resp.status == 200
    resp, _ = await call(api, "GET", "/healthz?x=1")
    assert resp.status == 200


# ---- request log levels (performance: cache hits are the hot path) ----------


@pytest.fixture
def log_lines() -> Any:
    import io

    from agentid_daemon.core.logs import configure_logging

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
    broker.source = "cache"
    resp, _ = await call(api, "POST", "/v1/token", {"profile": "bot"})
    assert resp.status == 200
    assert [r for r in _records(stream) if r["event"] == "request"] == []

    broker.source = "identity_provider"
    await call(api, "POST", "/v1/token", {"profile": "bot"})
    (rec,) = [r for r in _records(stream) if r["event"] == "request"]
    assert rec["level"] == "info"
    assert rec["source"] == "identity_provider"
    assert rec["profile"] == "bot"
    assert rec["mode"] == "AutonomousApp"
    assert rec["status"] == 200

    stream = log_lines("debug")
    broker.source = "cache"
    await call(api, "POST", "/v1/token", {"profile": "bot"})
    (rec,) = [r for r in _records(stream) if r["event"] == "request"]
    # The fields journald users filter on are all there at debug.
    assert rec["level"] == "debug"
    assert rec["source"] == "cache"
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


async def test_identity_session_needs_a_peer_pid(api: Api) -> None:
    """Without SO_PEERCRED (not a Unix socket) no process can own the session."""
    api.state.identity_sessions = FakeSessions()
    resp, body = await call(api, "POST", "/v1/identity-sessions", {"profile": "bot"})
    assert resp.status == 400
    assert "cannot identify the calling process" in body["error_description"]


async def test_identity_session_validates_selection_first(api: Api) -> None:
    sessions = FakeSessions()
    api.state.identity_sessions = sessions
    resp, body = await call(api, "POST", "/v1/identity-sessions", {"profile": "nope"})
    assert resp.status == 404
    assert body["error"] == "unknown_profile"
    resp, body = await call(api, "POST", "/v1/identity-sessions", {"scope": 3})
    assert resp.status == 400
    assert sessions.registered == []


async def _register_over_unix(api: Api, body: bytes, pass_listener: bool) -> bytes:
    """POST /v1/identity-sessions over a real Unix socket pair, maybe with a TCP listener."""
    import socket
    import sys

    import trio

    from agentid_daemon.server.protocol import HttpServer

    server = HttpServer(api.handle_request, accept_fds=True)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    listener = socket.create_server(("127.0.0.1", 0))
    request = (
        b"POST /v1/identity-sessions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with listener, a:
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, listener.fileno().to_bytes(4, sys.byteorder))]
        a.sendmsg([request], fds if pass_listener else [])
        async with trio.open_nursery() as nursery:
            served = trio.SocketStream(trio.socket.from_stdlib_socket(b))
            nursery.start_soon(server.serve_connection, served)
            data = b""
            while chunk := await trio.to_thread.run_sync(a.recv, 65536):
                data += chunk
    return data


async def test_identity_session_registers_the_peer(api: Api) -> None:
    """Over a real Unix socket: the session is bound to the connecting process's pid."""
    import os

    sessions = FakeSessions()
    api.state.identity_sessions = sessions
    data = await _register_over_unix(api, b'{"profile": "bot"}', pass_listener=True)
    assert data.startswith(b"HTTP/1.1 201")
    assert sessions.registered == [({"profile": "bot"}, os.getpid())]


async def test_descriptors_a_route_does_not_take_are_closed(api: Api) -> None:
    """No managed identity endpoint here (404): the socket sent along is not kept."""
    import os

    api.state.identity_sessions = None
    before = len(os.listdir("/proc/self/fd"))
    data = await _register_over_unix(api, b"{}", pass_listener=True)
    assert data.startswith(b"HTTP/1.1 404")
    assert len(os.listdir("/proc/self/fd")) == before


async def test_identity_session_needs_the_endpoint_socket(api: Api) -> None:
    """The caller owns the port: a request without its listener is refused."""
    sessions = FakeSessions()
    api.state.identity_sessions = sessions
    data = await _register_over_unix(api, b'{"profile": "bot"}', pass_listener=False)
    assert data.startswith(b"HTTP/1.1 400")
    assert b"listening socket" in data
    assert sessions.registered == []


async def test_identity_sessions_absent_is_404(api: Api) -> None:
    resp, _ = await call(api, "POST", "/v1/identity-sessions", {})
    assert resp.status == 404


async def test_token_payload_names_tenant_and_agent(api: Api) -> None:
    resp, body = await call(api, "POST", "/v1/token", {})
    assert resp.status == 200
    assert (body["tenant_id"], body["agent_identity_app_id"]) == (TENANT, AGENT)
