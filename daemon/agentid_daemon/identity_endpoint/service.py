"""The managed identity endpoint as a service: its listeners, server and sessions together.

:class:`IdentitySessions` owns the :class:`~.sessions.SessionTable`, the
:class:`~.endpoint.MIEndpoint` that answers with it, one
:class:`~agentid_daemon.server.protocol.HttpServer` behind
:class:`~agentid_daemon.server.loopback_peers.LoopbackAdmission`, and the listeners that feed it:
the sidecar's fixed one (inherited from a socket unit or bound at start-up)
and each exec session's own (received over SCM_RIGHTS). Sessions, headers and
their files are :mod:`.sessions`' job; this module is their lifetimes.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import Any

import trio

from ..core.errors import ConfigurationError, InvalidRequest
from ..core.logs import get_logger
from ..core.metrics import RequestCounter
from ..server.listener import ListenerError
from ..server.loopback_peers import LoopbackAdmission
from ..server.protocol import HttpServer, Limits
from . import protocol as P
from .endpoint import MIEndpoint, TokenSource
from .sessions import (
    MAX_CONNECTIONS_PER_OTHER_UID,
    MAX_HEADER_CHARS,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_PROCESS,
    MI_LIMITS,
    MIN_HEADER_CHARS,
    IdentitySession,
    SessionTable,
    SidecarSettings,
    load_or_create_header,
    new_header,
    retire_header_file,
    session_label,
    valid_header,
)

log = get_logger("agentid_daemon.identity_endpoint.service")


class SessionListeners(trio.abc.Listener[trio.SocketStream]):
    """Many listening sockets (one per exec session, the sidecar's) as one trio listener.

    Each socket gets an accept task that hands its connections to
    :meth:`accept`; closing a socket (its session ended) only stops that task.
    The daemon's copy of an exec session's socket is closed then, the exec
    process's copy keeps the port.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.SocketStream](0)
        self._scopes: dict[int, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def add(self, sock: trio.socket.SocketType) -> None:
        assert self._nursery is not None, "run() first"
        scope = trio.CancelScope()
        self._scopes[sock.fileno()] = scope
        self._nursery.start_soon(self._accept_from, sock, scope)

    def remove(self, sock: trio.socket.SocketType) -> None:
        scope = self._scopes.pop(sock.fileno(), None)
        if scope is not None:
            scope.cancel()

    async def _accept_from(self, sock: trio.socket.SocketType, scope: trio.CancelScope) -> None:
        listener = trio.SocketListener(sock)
        try:
            with scope:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:  # EMFILE and friends: wait, do not spin
                        log.warning("managed identity accept failed", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    try:
                        await self._send.send(stream)
                    except BaseException:
                        with trio.CancelScope(shield=True):
                            await stream.aclose()
                        raise
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def accept(self) -> trio.SocketStream:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("the managed identity listeners are closed") from None

    async def aclose(self) -> None:
        for scope in self._scopes.values():
            scope.cancel()
        self._scopes.clear()
        await self._receive.aclose()


def adopt_endpoint_listener(fd: int) -> tuple[trio.socket.SocketType, tuple[str, int]]:
    """Take a listening TCP socket sent by exec; it must listen on loopback.

    Owns *fd* from here on (closed on refusal). Returns the trio socket and
    its ``(host, port)``.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        raise InvalidRequest("the descriptor sent with the session is not a socket") from None
    try:
        name = sock.getsockname()
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if (
            sock.family not in (socket.AF_INET, socket.AF_INET6)
            or sock.type != socket.SOCK_STREAM
            or not listening
            or not ipaddress.ip_address(str(name[0])).is_loopback
        ):
            raise InvalidRequest(
                "the socket sent with the session must be a listening TCP socket on loopback"
            )
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    sock.setblocking(False)
    return trio.socket.from_stdlib_socket(sock), (str(name[0]), int(name[1]))


def endpoint_url(address: tuple[str, int]) -> str:
    host, port = address
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{P.PATH}"


class IdentitySessions:
    """The endpoint's listeners, its sessions and their pidfd watchers."""

    def __init__(
        self,
        tokens: TokenSource,
        *,
        sidecar: SidecarSettings | None = None,
        limits: Limits | None = None,
        max_sessions: int = MAX_SESSIONS,
        max_sessions_per_process: int = MAX_SESSIONS_PER_PROCESS,
        metrics: RequestCounter | None = None,
        allowed_uids: Iterable[int] = (),
    ) -> None:
        self.table = SessionTable(max_sessions, max_sessions_per_process)
        self.endpoint = MIEndpoint(self.table, tokens, metrics)
        self.admission = LoopbackAdmission(allowed_uids, max_per_peer=MAX_CONNECTIONS_PER_OTHER_UID)
        self.server = HttpServer(
            self.endpoint.handle_request, limits=limits or MI_LIMITS, admission=self.admission
        )
        self.sidecar = sidecar
        self.listeners = SessionListeners()
        self._sidecar_socket: trio.socket.SocketType | None = None
        self._address: tuple[str, int] | None = None  # the sidecar's
        self._nursery: trio.Nursery | None = None

    @property
    def url(self) -> str | None:
        """The sidecar's fixed endpoint (exec sessions each have their own port)."""
        return None if self._address is None else endpoint_url(self._address)

    def status(self) -> dict[str, Any]:
        """For ``GET /v1/status``: where, how many sessions (never a header), who may connect."""
        return {
            "endpoint": self.url,
            "sessions": len(self.table),
            "peers": {
                **self.admission.status(),
                "evicted_connections": self.server.evicted,
                "closed_over_peer_bound": self.server.over_peer_bound,
            },
        }

    async def prepare(self, inherited: trio.socket.SocketType | None = None) -> None:
        """Sidecar mode: take the fixed listener and load the header before serving.

        *inherited* is the listener a service manager passed (systemd's
        ``LISTEN_FDS``, name ``managed-identity``): it held the port while
        the daemon was down, so nobody else can have taken it. Without one
        the port is bound here; if it is taken, whoever holds it may have
        received the app's header while the daemon was away, so the header
        file is replaced before start-up stops with :class:`ListenerError`
        (exit 5). Called before the daemon's nursery opens, so that a bad
        header file (:class:`ConfigurationError`) also stops start-up with
        its own exit code.
        """
        if self.sidecar is None:
            if inherited is not None:
                inherited.close()
            return
        header = await trio.to_thread.run_sync(load_or_create_header, self.sidecar.header_file)
        if inherited is not None:
            sock = inherited
        else:
            sock = await self._bind_sidecar(*self.sidecar.listen)
        name = sock.getsockname()
        self._sidecar_socket, self._address = sock, (str(name[0]), int(name[1]))
        profile = self.sidecar.profile
        fields = {"profile": profile} if profile else {}
        self.table.add(IdentitySession(header, fields, label=f"sidecar {session_label(fields)}"))

    async def _bind_sidecar(self, host: str, port: int) -> trio.socket.SocketType:
        assert self.sidecar is not None
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            message = (
                f"cannot listen on {host}:{port} for the managed identity endpoint: "
                f"{exc.strerror or exc}"
            )
            if exc.errno == errno.EADDRINUSE:
                message += "; " + await trio.to_thread.run_sync(
                    retire_header_file, self.sidecar.header_file
                )
            raise ListenerError(message) from None
        for extra in listeners[1:]:
            await extra.aclose()
        return listeners[0].socket

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.listeners.run)
            await nursery.start(self._serve)
            if self._sidecar_socket is not None:
                await self._probe_peers()
                self.listeners.add(self._sidecar_socket)
                log.info("managed identity endpoint listening", endpoint=self.url)
            task_status.started()
            await trio.sleep_forever()

    async def register(
        self,
        fields: dict[str, Any],
        pid: int,
        *,
        pidfd: int,
        listener_fd: int,
        header: str | None = None,
    ) -> dict[str, Any]:
        """A new exec session for process *pid* (held by *pidfd*) on *listener_fd*.

        Takes ownership of both descriptors. *header* is the header of a
        session that a previous daemon served on the same listener (exec
        registers again after a restart); otherwise a new one is made. The
        answer holds the endpoint and the header.
        """
        try:
            if self._nursery is None:
                raise ConfigurationError("the managed identity endpoint is not running")
            await self._probe_peers()
            if header is not None and not valid_header(header):
                raise InvalidRequest(
                    f"identity_header must be {MIN_HEADER_CHARS} to {MAX_HEADER_CHARS} "
                    "characters (letters, digits, -._~+/=)"
                )
            sock, address = adopt_endpoint_listener(listener_fd)
        except BaseException:
            os.close(pidfd)
            raise
        session = IdentitySession(
            header or new_header(), dict(fields), label=session_label(fields), pid=pid
        )
        try:
            self.table.add(session)
        except BaseException:
            os.close(pidfd)
            sock.close()
            raise
        self.listeners.add(sock)
        self._nursery.start_soon(self._watch, session, pidfd, sock)
        url = endpoint_url(address)
        log.info(
            "identity session started",
            session=session.label,
            pid=pid,
            endpoint=url,
            resumed=header is not None,
            sessions=len(self.table),
        )
        return {
            "identity_endpoint": url,
            "identity_header": session.header,
            "pid": pid,
            # exec watches this process and registers again when it is gone.
            "daemon_pid": os.getpid(),
        }

    async def _serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        await self.server.serve(self.listeners, task_status=task_status)

    async def _probe_peers(self) -> None:
        """Find out, once, whether peers can be told apart here: when the first
        listener opens, so a daemon that never serves the endpoint opens no
        netlink socket."""
        if not self.admission.probed:
            await trio.to_thread.run_sync(self.admission.probe)

    async def _watch(
        self, session: IdentitySession, pidfd: int, sock: trio.socket.SocketType
    ) -> None:
        """End *session* when its process exits (the pidfd becomes readable)."""
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            self.table.remove(session)
            self.listeners.remove(sock)  # its accept task closes our copy
            os.close(pidfd)
            log.info(
                "identity session ended",
                session=session.label,
                pid=session.pid,
                sessions=len(self.table),
            )
