"""Per-connection state and HTTP/1.1 framing helpers of :mod:`protocol`.

Split out so that protocol.py reads as the server loop: the limits, the
state a connection carries while it is served, who is on the other end
(``current_peer``), and the few header rules h11 leaves to the server.
"""

from __future__ import annotations

import fcntl
import math
import os
import socket
import sys
import termios
from collections.abc import Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import trio

from .listener import PeerCred

# The SOPEERCRED of the connection whose request is being handled (None on a
# TCP or in-memory stream). Each connection is served in its own task, so a
# task-local context variable keeps the handler signature free of transport
# details while letting a route that needs the caller's pid (the identity
# session registration) ask for it.
PEER: ContextVar[PeerCred | None] = ContextVar("agentid_peer", default=None)


def current_peer() -> PeerCred | None:
    """The peer credentials of the request being handled (see ``PEER``)."""
    return PEER.get()


# The Unix connection itself, for a route that must ask the kernel more about
# its peer than SO_PEERCRED (the identity session's pidfd, peer_process.py).
PEER_SOCKET: ContextVar[trio.socket.SocketType | None] = ContextVar(
    "agentid_peer_socket", default=None
)
# File descriptors the peer sent with its request (SCM_RIGHTS), on a server
# built with ``accept_fds``: a route takes what it needs (take_received_fd),
# the connection closes the rest when it ends.
RECEIVED_FDS: ContextVar[list[int] | None] = ContextVar("agentid_received_fds", default=None)
#: At most this many descriptors are taken from one request; more are closed.
MAX_RECEIVED_FDS = 2


def current_peer_socket() -> trio.socket.SocketType | None:
    return PEER_SOCKET.get()


def take_received_fd() -> int | None:
    """The first descriptor the peer sent with this request; the caller owns it now."""
    fds = RECEIVED_FDS.get()
    return fds.pop(0) if fds else None


def fds_from_ancillary(ancdata: list[tuple[int, int, bytes]], keep: list[int]) -> None:
    """Append the SCM_RIGHTS descriptors of *ancdata* to *keep* (closing any past the cap)."""
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
            continue
        usable = len(data) - len(data) % 4
        for i in range(0, usable, 4):
            fd = int.from_bytes(data[i : i + 4], sys.byteorder, signed=True)
            if len(keep) < MAX_RECEIVED_FDS:
                keep.append(fd)
            else:
                os.close(fd)


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 64 * 1024
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    #: The daemon sizes this from RLIMIT_NOFILE (capacity.max_connections_for).
    max_connections: int = 256
    #: A new connection must start its request this soon (a silent one is
    #: dropped); the rest of the request then gets ``request_timeout_s``.
    #: Infinite: only ``request_timeout_s`` applies.
    first_byte_timeout_s: float = math.inf
    #: In-flight requests get this long after SIGTERM: the unit's TimeoutStopSec=
    #: (15 s) minus a margin for closing down (tests/client/test_systemd_units.py ties them).
    shutdown_grace_s: float = 10.0


@dataclass(frozen=True)
class Verdict:
    """An :class:`Admission`'s answer for one accepted connection.

    ``refusal`` set: close it unread (the text is for counters and logs).
    Otherwise ``peer`` names who holds it (connections of one peer are counted
    together) and ``max_held`` how many that peer may hold (None: no bound of
    its own, only ``Limits.max_connections``).
    """

    peer: Hashable | None
    max_held: int | None
    refusal: str | None = None


class Admission(Protocol):
    """Decides on an accepted connection before a byte of it is read.

    :class:`~.protocol.HttpServer` asks it for every connection when given
    one; :class:`~.loopback_peers.LoopbackAdmission` is the managed identity
    endpoint's (the loopback peer's uid).
    """

    def admit(self, stream: trio.abc.Stream) -> Verdict: ...


class CloseConnection(Exception):
    """Stop serving this connection (after any response already sent)."""


class Conn:
    """Per-connection state visible to the server for graceful shutdown."""

    def __init__(
        self, stream: trio.abc.Stream, scope: trio.CancelScope, peer: Hashable | None = None
    ) -> None:
        self.stream = stream
        self.scope = scope
        self.peer = peer  # the Admission's Verdict.peer; None without one
        self.idle = True
        # Every wait on the client (request arrival, idle keep-alive, sending
        # a response) is bounded by this one scope: its deadline is set before
        # each wait, and is infinite while the handler runs. Moving a deadline
        # is cheaper than entering a fresh cancel scope per wait, which showed
        # in cache-hit profiles. When it fires the connection is done (see
        # HttpServer._serve).
        self.timer = trio.CancelScope()
        self.mid_request = False  # the timer is bounding a started request
        self.receiving = False  # the task waits in receive_some (HttpServer._evict_waiting)
        self.answered = 0  # responses sent: > 0 while idle means a keep-alive connection
        self.idle_since = trio.current_time()
        #: Descriptors received with requests (SCM_RIGHTS) and not taken by a route.
        self.received_fds: list[int] = []


class BodyTooLarge(Exception):
    pass


def pending_bytes(stream: trio.abc.Stream) -> bool:
    """Whether the kernel holds received bytes of *stream* not read yet (sockets only)."""
    if not isinstance(stream, trio.SocketStream):
        return False
    try:
        answer = fcntl.ioctl(stream.socket.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    return bool(int.from_bytes(answer, sys.byteorder))


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def wants_close(http_version: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    if http_version == b"1.0":
        return not any(k == b"connection" and b"keep-alive" in v.lower() for k, v in headers)
    return any(k == b"connection" and b"close" in v.lower() for k, v in headers)
