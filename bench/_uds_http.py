"""Raw HTTP/1.1 over AF_UNIX for the benchmarks (stdlib + trio only).

The load generator must not measure a heavyweight client library, so
requests are pre-built byte strings and responses are parsed by a tiny
sans-IO reader (:func:`parse_response`) shared by the blocking connection
(:class:`UnixHTTPConnection`, used in load-generator processes) and the trio
connection (:class:`TrioUnixHTTPConnection`, used for bursts and fills).

Responses carry access tokens: nothing here logs or prints a body.
"""

from __future__ import annotations

import errno
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import trio

MAX_HEADER_BYTES = 64 * 1024


class HTTPProtocolError(Exception):
    """The peer sent something that is not an HTTP/1.1 response we understand."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)
    raw: bytes = field(repr=False)  # exact bytes on the wire (the floor server replays them)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def build_request(
    method: str, path: str, body: Any | None = None, *, keep_alive: bool = True
) -> bytes:
    """An HTTP/1.1 request as bytes; ``body`` (if not None) is sent as JSON."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    if body is not None or method in ("POST", "PUT", "DELETE"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + payload


def _parse_chunked(buf: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``; None if incomplete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        except ValueError as exc:
            raise HTTPProtocolError("bad chunk size") from exc
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(out), end + 4
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


def parse_response(buf: bytes | bytearray, *, eof: bool = False) -> tuple[Response, int] | None:
    """Parse one response from the front of ``buf``.

    Returns ``(response, bytes_consumed)``, or None when more bytes are
    needed. ``eof`` tells that the peer closed (a body without a length then
    ends there).
    """
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise HTTPProtocolError("response head too large")
        if eof and buf:
            raise HTTPProtocolError("connection closed inside the response head")
        return None
    head = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HTTPProtocolError(f"bad status line {head[0][:60]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    start = head_end + 4
    if status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b"", bytes(buf[:start])), start
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parsed = _parse_chunked(buf, start)
        if parsed is None:
            return None
        body, end = parsed
        return Response(status, headers, body, bytes(buf[:end])), end
    if "content-length" in headers:
        end = start + int(headers["content-length"])
        if len(buf) < end:
            return None
        return Response(status, headers, bytes(buf[start:end]), bytes(buf[:end])), end
    if not eof:
        return None
    return Response(status, headers, bytes(buf[start:]), bytes(buf)), len(buf)


class UnixHTTPConnection:
    """A blocking keep-alive connection (one per load-generator process)."""

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UnixHTTPConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, request: bytes) -> Response:
        self.sock.sendall(request)
        while True:
            parsed = parse_response(self._buf)
            if parsed is not None:
                resp, used = parsed
                del self._buf[:used]
                return resp
            chunk = self.sock.recv(65536)
            if not chunk:
                parsed = parse_response(self._buf, eof=True)
                if parsed is None:
                    raise HTTPProtocolError("connection closed before a response")
                self._buf.clear()
                return parsed[0]
            self._buf += chunk

    def request(self, method: str, path: str, body: Any | None = None) -> Response:
        return self.send_raw(build_request(method, path, body))


def request_once(
    path: str, method: str, url: str, body: Any | None = None, *, timeout: float = 30.0
) -> Response:
    """One request on a fresh connection (blocking)."""
    with UnixHTTPConnection(path, timeout=timeout) as conn:
        return conn.send_raw(build_request(method, url, body, keep_alive=False))


async def open_unix_retrying(path: str, *, attempts: int = 4000) -> trio.SocketStream:
    """Connect, retrying while the listen backlog is full (EAGAIN on AF_UNIX).

    A burst of a thousand simultaneous connects overflows any reasonable
    backlog; Linux then answers EAGAIN instead of queueing. trio's own
    ``connect`` takes that EAGAIN for "in progress" and hands back a socket
    that is not connected, so the connect is done here, non-blocking, with
    a retry.
    """
    for _ in range(attempts):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            await trio.sleep(0.005)
            continue
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    raise OSError(errno.EAGAIN, f"listen backlog of {path} stayed full")


class TrioUnixHTTPConnection:
    """A trio keep-alive connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    @classmethod
    async def open(cls, path: str) -> TrioUnixHTTPConnection:
        return cls(await open_unix_retrying(path))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send_raw(self, request: bytes) -> Response:
        await self.stream.send_all(request)
        while True:
            parsed = parse_response(self._buf)
            if parsed is not None:
                resp, used = parsed
                del self._buf[:used]
                return resp
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                parsed = parse_response(self._buf, eof=True)
                if parsed is None:
                    raise HTTPProtocolError("connection closed before a response")
                self._buf.clear()
                return parsed[0]
            self._buf += chunk

    async def request(self, method: str, path: str, body: Any | None = None) -> Response:
        return await self.send_raw(build_request(method, path, body))


async def trio_request_once(path: str, method: str, url: str, body: Any | None = None) -> Response:
    conn = await TrioUnixHTTPConnection.open(path)
    try:
        return await conn.send_raw(build_request(method, url, body, keep_alive=False))
    finally:
        await conn.aclose()
