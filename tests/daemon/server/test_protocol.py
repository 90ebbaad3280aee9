"""Tests for protocol.py: h11 connections over memory streams and a real Unix socket."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h11
import pytest
import trio
import trio.testing

from agentid_daemon.server.protocol import Headers, HttpServer, Limits, Response


async def echo_handler(method: str, target: str, headers: Headers, body: bytes) -> Response:
    if target == "/boom":
        raise RuntimeError("handler bug")
    if target == "/slow":
        await trio.sleep(3)
    return Response.json(200, {"method": method, "target": target, "len": len(body)})


def req(method: str = "GET", target: str = "/x", body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra}"
    if body or method in ("POST", "DELETE"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Client:
    """A tiny h11 client on a trio stream that reads whole responses."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h = h11.Connection(h11.CLIENT)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[str, str], bytes] | None:
        """The next response, or None if the server closed without one."""
        status, headers, body = 0, {}, b""
        while True:
            ev = self.h.next_event()
            if ev is h11.NEED_DATA:
                self.h.receive_data(await self.stream.receive_some(65536))
                continue
            if isinstance(ev, h11.Response):
                status = ev.status_code
                headers = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
                    with contextlib.suppress(h11.LocalProtocolError):
                        self.h.start_next_cycle()
                return status, headers, body
            elif isinstance(ev, h11.ConnectionClosed):
                return None

    async def request(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        # Keep the client state machine in step: feed the request through h11 as "sent".
        self.h.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        self.h.send(h11.EndOfMessage())
        await self.send_raw(data)
        resp = await self.response()
        assert resp is not None, "connection closed without a response"
        return resp


async def closed(stream: trio.abc.Stream) -> bool:
    return await stream.receive_some(65536) == b""


@pytest.fixture
async def pair(nursery: trio.Nursery):
    server = HttpServer(echo_handler, limits=Limits(request_timeout_s=10, idle_timeout_s=60))
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(server.serve_connection, server_stream)
    return server, client_stream


async def test_keep_alive_two_requests(pair) -> None:
    _server, stream = pair
    c = Client(stream)
    with trio.fail_after(5):
        s1, h1, b1 = await c.request(req("GET", "/a"))
        s2, _h2, b2 = await c.request(req("POST", "/b", b'{"x":1}'))
    assert (s1, s2) == (200, 200)
    assert json.loads(b1)["target"] == "/a"
    assert json.loads(b2) == {"method": "POST", "target": "/b", "len": 7}
    assert h1["content-type"] == "application/json"
    assert h1["cache-control"] == "no-store"
    assert "connection" not in h1


async def test_connection_close_honoured(pair) -> None:
    _server, stream = pair
    with trio.fail_after(5):
        status, headers, _ = await Client(stream).request(req(extra="Connection: close\r\n"))
        assert status == 200
        assert headers["connection"] == "close"
        assert await closed(stream)


async def test_malformed_request_400_and_close(pair) -> None:
    _server, stream = pair
    with trio.fail_after(5):
        status, headers, body = await Client(stream).request(b"NOT HTTP AT ALL\r\n\r\n")
        assert status == 400
        assert headers["connection"] == "close"
        assert json.loads(body)["error"] == "invalid_request"
        assert await closed(stream)


async def test_oversized_body_413(pair) -> None:
    _server, stream = pair
    with trio.fail_after(5):
        status, _, body = await Client(stream).request(
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
        )
    assert status == 413
    assert "larger than" in json.loads(body)["error_description"]


async def test_oversized_chunked_body_413(pair) -> None:
    _server, stream = pair
    chunk = b"x" * 40000
    data = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n"
    with trio.fail_after(5):
        status, _, _ = await Client(stream).request(data)
    assert status == 413


async def test_huge_headers_431(pair) -> None:
    _server, stream = pair
    with trio.fail_after(5):
        status, _, _ = await Client(stream).request(req(extra="X-Big: " + "a" * 70000 + "\r\n"))
    assert status == 431


@pytest.mark.parametrize("header", ["Origin: http://evil.example", "Referer: http://x/"])
async def test_origin_referer_forbidden(pair, header: str) -> None:
    _server, stream = pair
    with trio.fail_after(5):
        status, _, body = await Client(stream).request(req(extra=header + "\r\n"))
    assert status == 403
    assert json.loads(body)["error"] == "forbidden"


async def test_handler_exception_500_and_connection_survives(pair) -> None:
    _server, stream = pair
    c = Client(stream)
    with trio.fail_after(5):
        status, _, body = await c.request(req("GET", "/boom"))
        assert status == 500
        assert json.loads(body)["error"] == "internal_error"
        assert b"handler bug" not in body
        status, _, _ = await c.request(req("GET", "/ok"))
        assert status == 200


async def test_slow_client_request_timeout(autojump_clock, pair) -> None:
    _server, stream = pair
    with trio.fail_after(30):
        await stream.send_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        c = Client(stream)
        c.h.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        status, _, _ = await c.response()
        assert status == 408
        assert await closed(stream)


async def test_idle_client_dropped_without_response(autojump_clock, pair) -> None:
    _server, stream = pair
    with trio.fail_after(120):
        status, _, _ = await Client(stream).request(req())
        assert status == 200
        assert await closed(stream)  # after idle_timeout_s, silently


async def test_head_has_no_body(pair) -> None:
    _server, stream = pair
    c = Client(stream)
    c.h.send(h11.Request(method="HEAD", target="/", headers=[("host", "x")]))
    c.h.send(h11.EndOfMessage())
    with trio.fail_after(5):
        await c.send_raw(req("HEAD", "/x"))
        status, headers, body = await c.response()
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) > 0


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[trio.abc.Stream](100)
        self.accepted = 0

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self.send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        stream = await self.receive.receive()
        self.accepted += 1
        return stream

    async def aclose(self) -> None:
        self.receive.close()


async def test_connection_cap_backpressure(autojump_clock) -> None:
    server = HttpServer(echo_handler, limits=Limits(max_connections=1))
    listener = MemoryListener()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            a = await listener.connect()
            b = await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            # b is accepted (to know that someone waits) but not served: the rest
            # of the queue stays in the backlog.
            assert listener.accepted == 2
            assert server.active_connections == 1
            c = await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            assert listener.accepted == 2
            await c.aclose()
            await a.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert server.active_connections == 1
            status, _, _ = await Client(b).request(req())
            assert status == 200
            server.stop()


async def test_idle_keepalives_make_room_for_a_new_client(autojump_clock) -> None:
    """Was: keep-alive connections at max_connections starved a new client for 60 s."""
    server = HttpServer(echo_handler, limits=Limits(max_connections=2, idle_timeout_s=60))
    listener = MemoryListener()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            idle = [Client(await listener.connect()) for _ in range(2)]
            for client in idle:  # answered, kept alive, now idle
                status, _, _ = await client.request(req())
                assert status == 200
            await trio.testing.wait_all_tasks_blocked()
            assert server.active_connections == 2
            started = trio.current_time()  # the virtual (autojump) clock: no wall time
            newcomer = Client(await listener.connect())
            status, _, _ = await newcomer.request(req())
            assert status == 200
            assert trio.current_time() - started < 60, "served only after the idle timeout"
            assert server.evicted >= 1
            server.stop()


async def test_unanswered_connections_are_not_evicted(autojump_clock) -> None:
    """Only answered keep-alive connections give way: a fresh one may hold a request."""
    server = HttpServer(echo_handler, limits=Limits(max_connections=1, request_timeout_s=10))
    listener = MemoryListener()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            first = await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            second = await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            assert server.evicted == 0
            assert server.active_connections == 1
            status, _, _ = await Client(first).request(req(extra="Connection: close\r\n"))
            assert status == 200
            status, _, _ = await Client(second).request(req())
            assert status == 200
            server.stop()


async def test_graceful_stop_finishes_inflight_request(autojump_clock) -> None:
    server = HttpServer(echo_handler, limits=Limits(shutdown_grace_s=10))
    listener = MemoryListener()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            idle = await listener.connect()
            busy = Client(await listener.connect())
            await busy.send_raw(req("GET", "/slow"))
            await trio.testing.wait_all_tasks_blocked()
            server.stop()
            assert await closed(idle)  # idle keep-alive connection closed at once
            busy.h.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            busy.h.send(h11.EndOfMessage())
            status, headers, _ = await busy.response()
            assert status == 200
            assert headers["connection"] == "close"
    assert not server.serving


async def test_graceful_stop_bounded(autojump_clock) -> None:
    async def hang(*_args: object) -> Response:
        await trio.sleep_forever()
        raise AssertionError

    server = HttpServer(hang, limits=Limits(shutdown_grace_s=2))
    listener = MemoryListener()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            client = await listener.connect()
            await client.send_all(req())
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            server.stop()
        assert trio.current_time() - start == pytest.approx(2)


# ---- over a real Unix socket -------------------------------------------------


async def _unix_server(nursery: trio.Nursery, path: Path, server: HttpServer) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(16)
    await nursery.start(server.serve, trio.SocketListener(sock))


async def test_unix_socket_malformed_then_next_connection(tmp_path: Path, nursery) -> None:
    path = tmp_path / "s.sock"
    server = HttpServer(echo_handler)
    with trio.fail_after(10):
        await _unix_server(nursery, path, server)
        bad = await trio.open_unix_socket(str(path))
        status, _, _ = await Client(bad).request(b"\x00\x01garbage\r\n\r\n")
        assert status == 400
        await bad.aclose()
        good = await trio.open_unix_socket(str(path))
        status, _, body = await Client(good).request(req("GET", "/fine"))
        assert status == 200
        assert json.loads(body)["target"] == "/fine"
        await good.aclose()
        server.stop()


async def test_unix_socket_other_uid_forbidden(tmp_path: Path, nursery) -> None:
    path = tmp_path / "s.sock"
    server = HttpServer(echo_handler, allowed_uid=4242)  # we are not uid 4242
    with trio.fail_after(10):
        await _unix_server(nursery, path, server)
        stream = await trio.open_unix_socket(str(path))
        status, _, body = await Client(stream).request(req())
        assert status == 403
        assert json.loads(body)["error"] == "forbidden"
        assert await closed(stream)
        server.stop()


# ---- the per-connection timer (one cancel scope for every wait) -------------


async def test_slow_handler_is_not_cut_by_the_request_timer(autojump_clock) -> None:
    async def slow(method: str, target: str, headers: Headers, body: bytes) -> Response:
        await trio.sleep(35)  # longer than request_timeout_s + idle_timeout_s of the limits
        return Response.json(200, {"ok": True})

    server = HttpServer(slow, limits=Limits(request_timeout_s=10, idle_timeout_s=20))
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, server_stream)
        with trio.fail_after(100):
            status, _, body = await Client(client_stream).request(req())
        assert status == 200
        assert json.loads(body) == {"ok": True}
        nursery.cancel_scope.cancel()


async def test_timer_rearms_for_each_request(autojump_clock, pair) -> None:
    _server, stream = pair
    c = Client(stream)
    with trio.fail_after(200):
        for _ in range(3):
            status, _, _ = await c.request(req())
            assert status == 200
            await trio.sleep(50)  # idle, but within idle_timeout_s (60)
        # A request that stops half-way after keep-alive requests still gets its 408.
        await stream.send_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        c.h.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        c.h.send(h11.EndOfMessage())
        start = trio.current_time()
        status, _, _ = await c.response()
        assert status == 408
        assert trio.current_time() - start == pytest.approx(10, abs=0.5)
        assert await closed(stream)


async def test_client_that_stops_reading_is_dropped(autojump_clock) -> None:
    async def big(method: str, target: str, headers: Headers, body: bytes) -> Response:
        return Response(200, [("content-type", "text/plain")], b"x" * 100_000)

    server = HttpServer(big, limits=Limits(request_timeout_s=10))
    # Lockstep: the server's send_all waits until the client reads (it never does).
    client_stream, server_stream = trio.testing.lockstep_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_stream.send_all, req())
        with trio.fail_after(60):
            await server.serve_connection(server_stream)  # returns: the timer dropped it
        assert server.active_connections == 0
        nursery.cancel_scope.cancel()
