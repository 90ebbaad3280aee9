"""A minimal HTTP/1.1 client over the daemon's Unix socket.

http.client costs ~30 ms of imports; the daemon API needs one request per
connection with JSON bodies, so this module speaks just that: a request with
``Content-Length`` and ``Connection: close``, and a response framed by
``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the stream.

Every wait is bounded by one deadline (``time.monotonic()`` value) that the
caller derives from ``--timeout``. A full listen backlog is not a failure: a
socket with a timeout is non-blocking, so ``connect()`` then fails at once
with EAGAIN, and :func:`connect` retries it with short jittered sleeps until
the deadline (the daemon is busy, not absent). A connection that ends before
a complete answer raises :class:`ConnectionLost`; the caller may repeat the
request on a fresh connection (the daemon's cache makes that idempotent).
"""

from __future__ import annotations

import _socket  # the C module: socket.py pulls in enum and selectors (~5 ms)
import errno
import os
import sys
import time

from . import jsonlite, trust
from .failures import ClientError
from .hotpath import DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S
from .hotpath import request_bytes as build_request

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any

    from .hotpath import Connection

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Sleeps between connect attempts on a full backlog: first, cap (seconds).
BACKLOG_RETRY_FIRST_S = 0.005
BACKLOG_RETRY_CAP_S = 0.25


class ConnectFailed(Exception):
    """The socket is absent or nobody listens: autostart may help."""

    def __init__(self, path: str, errno_name: str):
        super().__init__(f"{errno_name} connecting to {path}")
        self.path = path
        self.errno_name = errno_name


class ConnectionLost(Exception):
    """The daemon closed the connection before a complete answer (restart, crash, kill)."""


class DeadlineExceeded(Exception):
    """The call's deadline passed; ``connected`` tells a busy backlog from a silent daemon."""

    def __init__(self, path: str, connected: bool):
        super().__init__(f"deadline passed {'waiting on' if connected else 'connecting to'} {path}")
        self.path = path
        self.connected = connected


class ProtocolError(ClientError):
    def __init__(self, message: str):
        super().__init__(f"bad response from the daemon: {message}", 3)


def jitter(base: float) -> float:
    """``base`` times a random factor in [0.5, 1.5): spreads out many waiting clients."""
    return base * (0.5 + int.from_bytes(os.urandom(2), "little") / 65536)


class Response:
    """A daemon response. The body may hold a token: it stays out of repr."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body=<{len(self.body)} bytes>)"

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return jsonlite.loads(self.body)
        except ValueError as exc:
            raise ProtocolError(f"invalid JSON ({exc.__class__.__name__})") from None


def connect(path: str, deadline: float) -> _socket.socket:
    """Connect to ``path`` by ``deadline``; raise ConnectFailed when no daemon listens there.

    Only our own daemon is trusted (trust.py): the directory is checked
    before connecting, the peer's uid right after; Untrusted (exit 3) otherwise.
    """
    trust.check_socket_dir(path)
    sock = _connect(path, deadline)
    try:
        trust.check_peer(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(path: str, deadline: float) -> _socket.socket:
    """EAGAIN (the daemon's listen backlog is full) is retried until the deadline."""
    pause = BACKLOG_RETRY_FIRST_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(path, connected=False)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(remaining)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise ConnectFailed(path, type(exc).__name__) from None
        except TimeoutError:
            sock.close()
            raise DeadlineExceeded(path, connected=False) from None
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EAGAIN:
                raise ClientError(f"cannot connect to {path}: {exc.strerror or exc}", 3) from None
        time.sleep(min(jitter(pause), max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, BACKLOG_RETRY_CAP_S)


class _Reader:
    def __init__(self, sock: _socket.socket, deadline: float, received: bytes = b""):
        self.sock = sock
        self.deadline = deadline
        self.buf = received
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def until(self, marker: bytes, limit: int) -> bytes:
        while (idx := self.buf.find(marker)) < 0:
            if len(self.buf) > limit:
                raise ProtocolError("header section too large")
            if not self.fill():
                raise ConnectionLost("connection closed before a complete response head")
        out, self.buf = self.buf[:idx], self.buf[idx + len(marker) :]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise ConnectionLost("connection closed before the body ended")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self.fill():
            if len(self.buf) > MAX_BODY_BYTES:
                raise ProtocolError("body too large")
        out, self.buf = self.buf, b""
        return out


def read_response(
    sock: _socket.socket, method: str, deadline: float, received: bytes = b""
) -> Response:
    """The answer on ``sock``, of which ``received`` came already (hotpath.Connection)."""
    reader = _Reader(sock, deadline, received)
    head = reader.until(b"\r\n\r\n", MAX_HEADER_BYTES).decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {status_line[:60]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError("bad header line")
        headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b"")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = reader.until(b"\r\n", 1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError("bad chunk size") from None
            if size == 0:
                break
            body += reader.exactly(size)
            if len(body) > MAX_BODY_BYTES:
                raise ProtocolError("body too large")
            reader.exactly(2)
        return Response(status, headers, body)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError("bad Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ProtocolError("bad Content-Length")
        return Response(status, headers, reader.exactly(length))
    return Response(status, headers, reader.rest())


def request(
    path: str,
    method: str,
    target: str,
    payload: Any = None,
    *,
    deadline: float,
    pass_fd: int | None = None,
) -> Response:
    """One request on a fresh connection; *pass_fd* is sent along (SCM_RIGHTS).

    Raises ConnectFailed when nobody listens, ConnectionLost when the
    connection ends before a complete answer, DeadlineExceeded at ``deadline``.
    """
    body = None if payload is None else jsonlite.dumps(payload).encode()
    sock = connect(path, deadline)
    try:
        data = build_request(method, target, body)
        if pass_fd is None:
            sock.sendall(data)
        else:
            # The descriptor rides on the first bytes; the daemon reads them with recvmsg.
            fds = pass_fd.to_bytes(4, sys.byteorder, signed=True)
            sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            if sent < len(data):  # never an empty send: the daemon may have answered already
                sock.sendall(data[sent:])
        return read_response(sock, method, deadline)
    except TimeoutError:
        raise DeadlineExceeded(path, connected=True) from None
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise ConnectionLost(type(exc).__name__) from None
    finally:
        sock.close()


def resume(conn: Connection, method: str, target: str) -> Response:
    """Finish the request the hot path began on ``conn`` (agentid_client.hotpath):
    its directory passed; its peer is checked here unless the request went out,
    and what the daemon answered so far is read on, never asked again. The same
    errors as :func:`request`."""
    path, sock = conn.path, conn.sock
    try:
        if not conn.sent:
            trust.check_peer(sock, path)
            body = jsonlite.dumps(conn.payload).encode()
            sock.sendall(build_request(method, target, body))
        return read_response(sock, method, conn.deadline, conn.received)
    except TimeoutError:
        raise DeadlineExceeded(path, connected=True) from None
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise ConnectionLost(type(exc).__name__) from None
    finally:
        sock.close()
