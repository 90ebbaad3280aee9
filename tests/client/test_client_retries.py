"""The client survives a busy or restarting daemon within its deadline (issue: lifecycle).

Real sockets in threads play the daemon: a full listen backlog (EAGAIN), a
connection closed before the answer (restart, crash), a daemon that accepts
and never answers. No timed assertions: each case either gets its answer or
fails with the documented exit code and message.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator

import client_fakes
import pytest

from agentid_client import daemon_api
from agentid_client.cli import CLI
from agentid_client.failures import ClientError

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"ok": true}'[:-1]


def _read_head(conn: socket.socket) -> bytes:
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def sock_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = client_fakes.short_socket_path()
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", path)
    monkeypatch.setenv("AGENTID_HELPER_NO_AUTOSTART", "1")
    monkeypatch.delenv("AGENTID_HELPER_TIMEOUT", raising=False)
    yield path


def test_full_backlog_waits_instead_of_failing(sock_path: str) -> None:
    """Was: EAGAIN "Resource temporarily unavailable", exit 3, at once."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock_path)
    srv.listen(0)  # one pending connection fills it
    filler = socket.socket(socket.AF_UNIX)
    filler.connect(sock_path)
    probe = socket.socket(socket.AF_UNIX)
    probe.setblocking(False)
    with pytest.raises(BlockingIOError):  # the backlog really is full
        probe.connect(sock_path)
    probe.close()
    result: dict[str, object] = {}

    def client() -> None:
        try:
            result["resp"] = daemon_api.call("GET", "/healthz", timeout=30)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    # The client is retrying EAGAIN now; drain the backlog, then answer it.
    first, _ = srv.accept()
    first.close()
    filler.close()
    conn, _ = srv.accept()
    _read_head(conn)
    conn.sendall(ANSWER)
    conn.close()
    thread.join(30)
    srv.close()
    assert "error" not in result, result
    assert result["resp"].status == 200  # type: ignore[attr-defined]


def test_connection_lost_before_the_answer_is_retried(sock_path: str) -> None:
    """Was: "connection closed early", exit 1. A restarted daemon answers the repeat."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock_path)
    srv.listen(8)
    seen: list[bytes] = []

    def daemon() -> None:
        for answer in (False, True):
            conn, _ = srv.accept()
            seen.append(_read_head(conn))
            if answer:
                conn.sendall(ANSWER)
            conn.close()  # first time: gone without a word (kill -9)

    thread = threading.Thread(target=daemon, daemon=True)
    thread.start()
    resp = daemon_api.call("POST", "/v1/token", {"profile": "p"}, timeout=30)
    thread.join(10)
    srv.close()
    assert resp.status == 200
    assert len(seen) == 2
    assert all(head.startswith(b"POST /v1/token ") for head in seen)


def test_daemon_gone_for_good_is_exit_3_not_1(sock_path: str) -> None:
    """A daemon that closes every connection without answering: exit 3 by the deadline."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock_path)
    srv.listen(8)
    stop = threading.Event()

    def daemon() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            _read_head(conn)
            conn.close()

    thread = threading.Thread(target=daemon, daemon=True)
    thread.start()
    try:
        with pytest.raises(ClientError) as info:
            daemon_api.call("POST", "/v1/token", {"profile": "p"}, timeout=1.5)
    finally:
        stop.set()
        thread.join(10)
        srv.close()
    assert info.value.exit_code == 3
    assert "did not answer within 1.5 s" in info.value.message


def test_silent_daemon_names_doctor_and_honours_timeout(
    sock_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: a SIGSTOPped daemon held `get` 120 s, not configurable."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock_path)
    srv.listen(8)  # accepts into the backlog, never answers
    try:
        code = CLI().run(["get", "--timeout", "0.5"])
    finally:
        srv.close()
    err = capsys.readouterr().err
    assert code == 3
    assert "accepted the call but did not answer within 0.5 s" in err
    assert "agentid-helper doctor" in err
    assert "--timeout" in err


def test_timeout_from_the_environment(
    sock_path: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock_path)
    srv.listen(8)
    monkeypatch.setenv("AGENTID_HELPER_TIMEOUT", "0.4")
    started = time.monotonic()
    try:
        stdin = io.StringIO("protocol=https\nhost=example.com\n\n")
        code = CLI(stdin=stdin).run(["git-credential", "get", "--profile", "p"])
    finally:
        srv.close()
    assert code == 3
    assert "within 0.4 s" in capsys.readouterr().err
    assert time.monotonic() - started < 60  # not the old fixed 120 s (a bound, not a timing)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "1e9"])
def test_bad_timeouts_are_usage_errors(
    sock_path: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert CLI().run(["get", "--timeout", value]) == 2
    assert "--timeout" in capsys.readouterr().err
    monkeypatch.setenv("AGENTID_HELPER_TIMEOUT", value)
    assert CLI().run(["get"]) == 2
    assert "AGENTID_HELPER_TIMEOUT" in capsys.readouterr().err


def test_the_timeout_variable_is_documented() -> None:
    from agentid_client.commands import ENVIRONMENT

    assert daemon_api.TIMEOUT_ENV in [name for name, _ in ENVIRONMENT]
