"""HTTP/1.1 over trio streams with h11: connections, limits, graceful shutdown.

The HTTP state machine is h11's (sans-IO); this module only moves bytes
between it and a trio stream and enforces the server's limits:

- request heads up to ``max_header_bytes`` (h11 ``max_incomplete_event_size``;
  beyond it: 431), bodies up to ``max_body_bytes`` (413);
- a whole request must arrive within ``request_timeout_s`` and a kept-alive
  connection may idle ``idle_timeout_s`` (slow or silent clients are dropped);
- at most ``max_connections`` at once (plus one accepted, waiting for a
  slot): beyond that we stop accepting and new clients wait in the kernel
  backlog (backpressure rather than 503s, because
  our clients are local scripts that would only retry). At capacity, idle
  keep-alive connections (ones that were answered and wait for another
  request) are closed first, oldest first, so that they cannot starve a new
  client for ``idle_timeout_s`` (:meth:`HttpServer._evict_idle`);
- malformed HTTP: 400 and close; handler exceptions: 500, logged, the server
  goes on;
- browsers are not clients: a request with ``Origin`` or ``Referer`` gets 403
  (a web page must not be able to fetch tokens via a local proxy);
- peers with another uid (``SO_PEERCRED``) get 403;
- with an :class:`~.connections.Admission` (the loopback TCP endpoint's
  :class:`~.loopback_peers.LoopbackAdmission`), each accepted connection is
  judged before a byte of it is read: a refused one is closed unread; one
  peer holds at most its ``max_held`` connections (a newcomer from a peer at
  its bound takes the place of that peer's oldest connection that is waiting
  for a request, else it is closed); at capacity, a newcomer takes the place
  of the oldest connection waiting for a request, silent ones included
  (:meth:`HttpServer._evict_waiting`), so held-open connections cannot starve
  a new client. ``Limits.first_byte_timeout_s`` bounds how long a new
  connection may stay silent.

The application is a single coroutine ``handler(method, path, headers, body)
-> Response`` (see :mod:`.api`), so routes are testable without any socket.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Awaitable, Callable, Hashable
from typing import cast

import h11
import trio

from ..core.logs import get_logger
from .connections import (
    MAX_RECEIVED_FDS,
    PEER,
    PEER_SOCKET,
    RECEIVED_FDS,
    Admission,
    BodyTooLarge,
    CloseConnection,
    Conn,
    Limits,
    content_length,
    current_peer,
    fds_from_ancillary,
    pending_bytes,
    wants_close,
)
from .listener import PeerCred, peer_allowed, peer_credentials
from .responses import SERVER_NAME, Headers, Response, response_head

__all__ = [
    "SERVER_NAME",
    "Handler",
    "Headers",
    "HttpServer",
    "Limits",
    "Response",
    "current_peer",
]

log = get_logger("agentid_daemon.server.protocol")

RECEIVE_SIZE = 16 * 1024

Handler = Callable[[str, str, Headers, bytes], Awaitable[Response]]


class HttpServer:
    """Serves one :data:`Handler` on trio listeners with the limits above."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits | None = None,
        allowed_uid: int | None = None,
        admission: Admission | None = None,
        accept_fds: bool = False,
    ) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.allowed_uid = allowed_uid
        self.admission = admission
        # Unix connections of our own uid may pass descriptors (SCM_RIGHTS) with a
        # request: the exec session's TCP listener (identity_sessions.py).
        self.accept_fds = accept_fds
        self._conns: set[Conn] = set()
        self._closing = False
        self._accept_scope = trio.CancelScope()
        self._slots = trio.Semaphore(self.limits.max_connections)
        self._newcomer_waiting = False  # accepted, waiting for a slot (see serve)
        self.serving = False
        self.evicted = 0  # connections waiting for a request, closed to make room
        self.over_peer_bound = 0  # closed unread: their peer's connections were all busy

    @property
    def active_connections(self) -> int:
        return len(self._conns)

    # ---- accepting -------------------------------------------------------

    async def serve(
        self,
        listener: trio.abc.Listener[trio.abc.Stream],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until :meth:`stop`, then let in-flight requests finish (bounded)."""
        slots = self._slots
        async with trio.open_nursery() as nursery:
            with self._accept_scope:
                self.serving = True
                task_status.started()
                while True:
                    try:
                        stream = await listener.accept()
                    except trio.ClosedResourceError:
                        break  # the listener was closed under us: same as stop()
                    except OSError as exc:
                        # EMFILE and friends: wait instead of spinning or dying.
                        log.warning("accept failed", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    peer: Hashable | None = None
                    if self.admission is not None:
                        admitted, peer = self._admit(stream)
                        if not admitted:
                            with trio.CancelScope(shield=True), trio.move_on_after(1):
                                await stream.aclose()
                            continue
                    # Accepting one connection ahead of a free slot tells us that
                    # someone waits: only then do idle keep-alive connections give way.
                    if slots.value == 0:
                        self._newcomer_waiting = True
                        if not self._evict_idle() and self.admission is not None:
                            self._evict_waiting()
                    try:
                        await slots.acquire()
                    except BaseException:
                        with trio.CancelScope(shield=True), trio.move_on_after(1):
                            await stream.aclose()
                        raise
                    finally:
                        self._newcomer_waiting = False
                    # Registered here, not when its task first runs: the next
                    # accept's count of this peer's connections must include it.
                    conn = Conn(stream, trio.CancelScope(), peer)
                    self._conns.add(conn)
                    nursery.start_soon(self._run_connection, conn, slots)
            self.serving = False
            self._closing = True
            for conn in list(self._conns):
                if conn.idle:
                    conn.scope.cancel()
            nursery.cancel_scope.deadline = trio.current_time() + self.limits.shutdown_grace_s

    def stop(self) -> None:
        """Stop accepting; idle connections close, busy ones finish their request."""
        self._accept_scope.cancel()

    def _admit(self, stream: trio.abc.Stream) -> tuple[bool, Hashable | None]:
        """The Admission's verdict, and room within the peer's own bound."""
        assert self.admission is not None
        verdict = self.admission.admit(stream)
        if verdict.refusal is not None:
            return False, None
        if verdict.max_held is not None:
            held = sum(
                1 for c in self._conns if c.peer == verdict.peer and not c.scope.cancel_called
            )
            if held >= verdict.max_held and not self._evict_waiting(verdict.peer):
                self.over_peer_bound += 1  # all its connections are busy: this one waits nowhere
                return False, None
        return True, verdict.peer

    def _evict_waiting(self, peer: Hashable | None = None) -> bool:
        """Close the oldest connection waiting for a request (of *peer*, if given).

        Silent connections count: behind an Admission one held open must not
        keep a newcomer out. Only a connection whose task is blocked reading
        with nothing to read is taken: not one accepted a moment ago whose
        task has not read yet, nor one whose bytes just arrived (its request
        would be lost). Whether one was found.
        """
        waiting = sorted(
            (
                c
                for c in self._conns
                if c.idle
                and c.receiving
                and not c.mid_request
                and not c.scope.cancel_called
                and (peer is None or c.peer == peer)
            ),
            key=lambda c: c.idle_since,
        )
        for conn in waiting:
            if not pending_bytes(conn.stream):
                conn.scope.cancel()
                self.evicted += 1
                return True
        return False

    def _evict_idle(self) -> int:
        """At capacity: close idle keep-alive connections, oldest first; how many.

        Up to 1/16 of the slots at once, so that a burst of new clients finds
        room without us dropping every idle connection for one newcomer. A
        connection that has not been answered yet is never evicted: its
        request may already sit in the socket buffer.
        """
        idle = sorted(
            (c for c in self._conns if c.idle and c.answered and not c.mid_request),
            key=lambda c: c.idle_since,
        )
        chosen = idle[: max(1, self.limits.max_connections // 16)]
        for conn in chosen:
            conn.scope.cancel()
            self.evicted += 1
        return len(chosen)

    async def _run_connection(self, conn: Conn, slots: trio.Semaphore) -> None:
        try:
            await self._serve_registered(conn)
        finally:
            slots.release()

    # ---- one connection --------------------------------------------------

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Serve requests on *stream* until the client or a limit closes it."""
        conn = Conn(stream, trio.CancelScope())
        self._conns.add(conn)
        await self._serve_registered(conn)

    async def _serve_registered(self, conn: Conn) -> None:
        stream = conn.stream
        with conn.scope:
            try:
                await self._serve(conn)
            except (CloseConnection, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except Exception:
                log.exception("connection failed")
            finally:
                self._conns.discard(conn)
                for fd in conn.received_fds:  # sent but not taken by a route
                    os.close(fd)
                conn.received_fds.clear()
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await stream.aclose()

    def _peer(self, stream: trio.abc.Stream) -> PeerCred | None:
        # In-memory streams (the protocol tests) have no peer to check.
        if not isinstance(stream, trio.SocketStream):
            return None
        sock = stream.socket
        if sock.family != trio.socket.AF_UNIX:
            return None
        try:
            return peer_credentials(sock)
        except OSError:
            return None

    async def _serve(self, conn: Conn) -> None:
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        with conn.timer:
            await self._serve_requests(h, conn)
            return
        # The timer fired: a slow request gets a 408, an idle keep-alive
        # connection or a client that stopped reading is dropped silently.
        if conn.mid_request:
            conn.timer = trio.CancelScope()
            with conn.timer:
                await self._send(
                    h,
                    conn,
                    Response.error(408, "invalid_request", "request timeout"),
                    close=True,
                )

    async def _serve_requests(self, h: h11.Connection, conn: Conn) -> None:
        peer = self._peer(conn.stream)
        PEER.set(peer)
        forbidden_peer = not peer_allowed(peer, uid=self.allowed_uid)
        if peer is not None and isinstance(conn.stream, trio.SocketStream):
            PEER_SOCKET.set(conn.stream.socket)
            if self.accept_fds and not forbidden_peer:
                RECEIVED_FDS.set(conn.received_fds)
        if forbidden_peer:
            assert peer is not None
            log.warning(
                "refused connection from another user", peer_uid=peer.uid, peer_pid=peer.pid
            )
        first = True
        while True:
            conn.idle = True
            if self._closing:
                return
            if first:
                wait = min(self.limits.first_byte_timeout_s, self.limits.request_timeout_s)
            else:
                wait = self.limits.idle_timeout_s
            first = False
            try:
                request, raw_headers, body = await self._read_request(h, conn, wait)
            except h11.RemoteProtocolError as exc:
                # h11 hints 501 for an unknown Transfer-Encoding (RFC 9112's
                # SHOULD); this API answers every malformed request with a 4xx.
                status = exc.error_status_hint or 400
                if status >= 500:
                    status = 400
                desc = "request headers too large" if status == 431 else "malformed HTTP request"
                await self._send(
                    h, conn, Response.error(status, "invalid_request", desc), close=True
                )
                return
            except BodyTooLarge:
                await self._send(
                    h,
                    conn,
                    Response.error(
                        413,
                        "invalid_request",
                        f"request body larger than {self.limits.max_body_bytes} bytes",
                    ),
                    close=True,
                )
                return
            if request is None:  # clean EOF between requests
                return
            conn.idle = False
            method = request.method.decode("ascii", "replace").upper()
            target = request.target.decode("ascii", "replace")
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw_headers]
            if forbidden_peer:
                response = Response.error(
                    403, "forbidden", "connections from another user are not allowed"
                )
                await self._send(h, conn, response, close=True, method=method)
                return
            if any(k in ("origin", "referer") for k, _ in headers):
                log.warning(
                    "refused request with Origin/Referer", method=method, path=target.split("?")[0]
                )
                response = Response.error(
                    403, "forbidden", "requests from web pages (Origin/Referer) are not allowed"
                )
            else:
                response = await self._call_handler(method, target, headers, body)
            close = self._closing or wants_close(request.http_version, raw_headers)
            await self._send(h, conn, response, close=close, method=method)
            conn.answered += 1
            conn.idle_since = trio.current_time()
            if close or h.our_state is not h11.DONE or self._newcomer_waiting:
                # A keep-alive connection gives its slot to a client waiting for one.
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _call_handler(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> Response:
        try:
            return await self.handler(method, target, headers, body)
        except Exception:
            # The traceback is rendered without locals and redacted (logs.py).
            log.exception("request handler failed", method=method, path=target.split("?")[0])
            return Response.error(500, "internal_error", "internal error; see the daemon log")

    async def _receive(self, conn: Conn) -> bytes:
        """The next bytes; on an ``accept_fds`` Unix connection, with their SCM_RIGHTS."""
        stream = conn.stream
        if not (self.accept_fds and RECEIVED_FDS.get() is conn.received_fds):
            # trio's streams hand out bytes (typed bytes | bytearray).
            return cast(bytes, await stream.receive_some(RECEIVE_SIZE))
        assert isinstance(stream, trio.SocketStream)
        try:
            data, ancdata, _flags, _addr = await stream.socket.recvmsg(
                RECEIVE_SIZE, socket.CMSG_SPACE(4 * MAX_RECEIVED_FDS), socket.MSG_CMSG_CLOEXEC
            )
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        fds_from_ancillary(ancdata, conn.received_fds)
        return data

    async def _read_request(
        self, h: h11.Connection, conn: Conn, wait_s: float
    ) -> tuple[h11.Request | None, list[tuple[bytes, bytes]], bytes]:
        """Read one request: head, its headers as a list, body.

        ``(None, [], b"")`` on EOF before a request. The headers are listed
        once here: h11's header sequence is slow to iterate repeatedly.
        """
        timer = conn.timer
        timer.deadline = trio.current_time() + wait_s
        conn.mid_request = False
        started = False
        request: h11.Request | None = None
        raw_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                if h.their_state is h11.DONE:
                    # Should not happen, but never block forever on it.
                    raise CloseConnection()
                if started and not conn.mid_request:
                    # The idle wait is over and the request is not complete:
                    # the rest must arrive quickly. (Armed here rather than
                    # on the first bytes: most requests arrive in one read,
                    # and no await separates the two points.)
                    conn.mid_request = True
                    timer.deadline = trio.current_time() + self.limits.request_timeout_s
                conn.receiving = True
                data = await self._receive(conn)
                conn.receiving = False
                if data and not started:
                    started = True
                    conn.idle = False
                h.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                # h11 only bounds *incomplete* heads; a head that arrived whole in
                # one large read is bounded here.
                raw_headers = list(event.headers)
                head = len(event.target) + sum(len(k) + len(v) + 4 for k, v in raw_headers)
                if head > self.limits.max_header_bytes:
                    raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
                length = content_length(raw_headers)
                if length is not None and length > self.limits.max_body_bytes:
                    raise BodyTooLarge()
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body_bytes:
                    raise BodyTooLarge()
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                timer.deadline = math.inf
                conn.mid_request = False
                return request, raw_headers, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                if request is not None:
                    raise CloseConnection()  # EOF in the middle of a request
                return None, [], b""
            elif event is h11.PAUSED:
                raise CloseConnection()

    async def _send(
        self,
        h: h11.Connection,
        conn: Conn,
        response: Response,
        *,
        close: bool,
        method: str = "",
    ) -> None:
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            data = h.send(response_head(response, close))
            if response.body and method != "HEAD" and response.status not in (204, 304):
                data += h.send(h11.Data(data=response.body))
            data += h.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            log.error("cannot send response", status=response.status, error=str(exc))
            raise CloseConnection() from exc
        # A response must not hang on a client that stops reading: on expiry
        # the timer ends the connection (HttpServer._serve). The deadline is
        # left as it is after sending: what follows a response is either the
        # end of the connection or _read_request(), which sets its own.
        conn.mid_request = False
        conn.timer.deadline = trio.current_time() + self.limits.request_timeout_s
        await conn.stream.send_all(data)
        if close:
            raise CloseConnection()
