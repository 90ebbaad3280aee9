"""The minimal HTTP/1.1 client: framing, errors, connect failures."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import client_fakes
import pytest
from client_fakes import FakeDaemon

from agentid_client.transport import (
    ConnectFailed,
    ConnectionLost,
    DeadlineExceeded,
    ProtocolError,
    Response,
    build_request,
    request,
)


def one_shot_server(path: str, reply: bytes) -> threading.Thread:
    """Accept one connection, read the request head, send ``reply`` raw, close."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        try:
            for i in range(0, len(reply), 7):  # dribble: the reader must reassemble
                conn.sendall(reply[i : i + 7])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader had all it needed (e.g. a chunked body's end) and left
        conn.close()
        srv.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def sock_path() -> str:
    return client_fakes.short_socket_path()


def test_json_round_trip(fake_daemon: FakeDaemon) -> None:
    deadline = time.monotonic() + 5
    resp = request(fake_daemon.path, "POST", "/v1/token", {"profile": "p"}, deadline=deadline)
    assert resp.status == 200
    assert resp.json()["access_token"] == client_fakes.TOKEN
    sent = fake_daemon.requests[-1]
    assert sent["json"] == {"profile": "p"}
    assert sent["headers"]["content-type"] == "application/json"
    assert "origin" not in sent["headers"]
    assert "referer" not in sent["headers"]


def test_204_and_empty_delete(fake_daemon: FakeDaemon) -> None:
    resp = request(fake_daemon.path, "DELETE", "/v1/token", deadline=time.monotonic() + 5)
    assert (resp.status, resp.body, resp.json()) == (204, b"", None)
    assert fake_daemon.requests[-1]["headers"]["content-length"] == "0"


@pytest.mark.parametrize(
    "reply,body",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}  ", b"{}  "),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n3;x=1\r\n[1]\r\n0\r\n\r\n",
            b"{}[1]",
        ),
        (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}', b'{"a": 1}'),
    ],
)
def test_response_framing(sock_path: str, reply: bytes, body: bytes) -> None:
    thread = one_shot_server(sock_path, reply)
    resp = request(sock_path, "GET", "/v1/status", deadline=time.monotonic() + 5)
    thread.join(5)
    assert resp.status == 200
    assert resp.body == body


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_responses(sock_path: str, reply: bytes) -> None:
    thread = one_shot_server(sock_path, reply)
    with pytest.raises(ProtocolError):
        request(sock_path, "GET", "/v1/status", deadline=time.monotonic() + 5)
    thread.join(5)


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
)
def test_truncated_responses_are_a_lost_connection(sock_path: str, reply: bytes) -> None:
    """A daemon that dies mid-answer: the caller may retry (not a protocol error, not exit 1)."""
    thread = one_shot_server(sock_path, reply)
    with pytest.raises(ConnectionLost):
        request(sock_path, "GET", "/v1/status", deadline=time.monotonic() + 5)
    thread.join(5)


def test_invalid_json_body(sock_path: str) -> None:
    thread = one_shot_server(sock_path, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{x}")
    resp = request(sock_path, "GET", "/v1/status", deadline=time.monotonic() + 5)
    thread.join(5)
    with pytest.raises(ProtocolError):
        resp.json()


def test_connect_failures(tmp_path: Path, sock_path: str) -> None:
    with pytest.raises(ConnectFailed):
        request(str(tmp_path / "absent.sock"), "GET", "/healthz", deadline=time.monotonic() + 5)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sock_path)  # bound, never listening: ECONNREFUSED
    try:
        with pytest.raises(ConnectFailed):
            request(sock_path, "GET", "/healthz", deadline=time.monotonic() + 5)
    finally:
        dead.close()
        os.unlink(sock_path)


def test_silent_daemon_hits_the_deadline(sock_path: str) -> None:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock_path)
    srv.listen(1)  # accepts into the backlog, never answers
    try:
        with pytest.raises(DeadlineExceeded) as info:
            request(sock_path, "GET", "/healthz", deadline=time.monotonic() + 0.2)
        assert info.value.connected
    finally:
        srv.close()


def test_request_bytes_and_repr() -> None:
    raw = build_request("POST", "/v1/token", b'{"a":1}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/token HTTP/1.1\r\n")
    assert b"Content-Length: 7" in head
    assert body == b'{"a":1}'
    assert "secret-token" not in repr(Response(200, {}, b'{"access_token":"secret-token"}'))


def test_fake_daemon_answers(fake_daemon: FakeDaemon) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(fake_daemon.path)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 200")
