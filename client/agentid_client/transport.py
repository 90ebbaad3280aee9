"""A minimal HTTP/1.1 client over the daemon's Unix socket.

http.client costs ~30 ms of imports; the daemon API needs one request per
connection with JSON bodies, so this module speaks just that: a request with
``Content-Length`` and ``Connection: close``, and a response framed by
``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the stream.
"""

from __future__ import annotations

import _socket  # the C module: socket.py pulls in enum and selectors (~5 ms)

from . import jsonlite, trust
from .failures import ClientError

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT_S = 120.0  # a token request may wait on the identity provider and its retries


class ConnectFailed(Exception):
    """The socket is absent or nobody listens: autostart may help."""

    def __init__(self, path: str, errno_name: str):
        super().__init__(f"{errno_name} connecting to {path}")
        self.path = path
        self.errno_name = errno_name


class ProtocolError(ClientError):
    def __init__(self, message: str):
        super().__init__(f"bad response from the daemon: {message}")


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


def connect(path: str, timeout: float) -> _socket.socket:
    """Connect to ``path``; raise ConnectFailed when no daemon listens there.

    Only our own daemon is trusted (trust.py): the directory is checked
    before connecting, the peer's uid right after; Untrusted (exit 3) otherwise.
    """
    trust.check_socket_dir(path)
    sock = _connect(path, timeout)
    try:
        trust.check_peer(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(path: str, timeout: float) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
        sock.close()
        raise ConnectFailed(path, type(exc).__name__) from None
    except OSError as exc:
        sock.close()
        raise ClientError(f"cannot connect to {path}: {exc.strerror or exc}", 3) from None
    return sock


def build_request(method: str, target: str, body: bytes | None) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: localhost",
        "Connection: close",
        "User-Agent: agentid-helper",
        "Accept: application/json",
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    elif method in ("POST", "PUT", "DELETE"):
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


class _Reader:
    def __init__(self, sock: _socket.socket):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
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
                raise ProtocolError("connection closed early")
        out, self.buf = self.buf[:idx], self.buf[idx + len(marker) :]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise ProtocolError("connection closed before the body ended")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self.fill():
            if len(self.buf) > MAX_BODY_BYTES:
                raise ProtocolError("body too large")
        out, self.buf = self.buf, b""
        return out


def read_response(sock: _socket.socket, method: str) -> Response:
    reader = _Reader(sock)
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
    path: str, method: str, target: str, payload: Any = None, *, timeout: float = DEFAULT_TIMEOUT_S
) -> Response:
    """One request on a fresh connection. Raises ConnectFailed when nobody listens."""
    body = None if payload is None else jsonlite.dumps(payload).encode()
    sock = connect(path, timeout)
    try:
        sock.sendall(build_request(method, target, body))
        return read_response(sock, method)
    except TimeoutError:
        raise ClientError(f"the daemon at {path} did not answer within {timeout:g} s", 3) from None
    except (ConnectionResetError, BrokenPipeError):
        raise ClientError(f"the daemon at {path} closed the connection", 3) from None
    finally:
        sock.close()
