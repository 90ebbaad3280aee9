"""Who is on the other end of a loopback TCP connection, and whether we serve it.

A TCP socket carries no ``SO_PEERCRED``, but on loopback both ends live in
this kernel: ``NETLINK_SOCK_DIAG`` (the interface behind ``ss -tep``) answers
an exact lookup of the peer's socket by its 4-tuple with that socket's owner
(``inet_diag_msg.idiag_uid``, mapped into our user namespace). See the Linux
man pages sock_diag(7) and netlink(7); the structures are those of
``<linux/inet_diag.h>``. Only the stdlib (``socket``, ``struct``) is used.

:class:`LoopbackAdmission` is the admission policy
:class:`~.protocol.HttpServer` applies to each accepted TCP connection
before reading a byte of it (:class:`~.connections.Admission`):

- a peer whose uid is ours or on the allow-list is admitted; any other uid
  (root included: a root process can read the header anyway, and the Unix
  socket refuses root too) is refused, and so is a peer that is not on
  loopback;
- where the kernel cannot answer at all (no sock_diag: an old kernel, a
  sandbox without netlink; found once by :meth:`LoopbackAdmission.probe`
  on a connection to ourselves) the policy *fails open*: connections are
  served unverified and ``status``/``doctor`` say so. The endpoint's session
  header stays the check in that case; refusing everyone would only make
  the endpoint unusable where it cannot be made safer;
- where the probe succeeded, any lookup that fails later *fails closed*:
  no live socket for the 4-tuple (the peer already closed, a socket in
  TIME_WAIT whose owner the kernel no longer knows: there is nobody to
  answer anyway), or an error (out of descriptors) that no peer must be
  able to turn into a skipped check.

Every admitted peer is keyed (``uid N``, or ``unverified``) so the server can
bound what one peer holds: our own uid up to the whole capacity, any other
(allow-listed) uid up to :attr:`LoopbackAdmission.max_per_peer`.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import count
from typing import Any

import trio

from ..core.logs import get_logger
from .connections import Verdict

log = get_logger("agentid_daemon.server.loopback_peers")

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
# TCP states (include/net/tcp_states.h) of a peer socket that can still read
# an answer: connected, or half-closed after sending its request.
TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2 = 1, 4, 5
LIVE_PEER_STATES = frozenset({TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2})
INET_DIAG_NOCOOKIE = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid
_REQ_HEAD = struct.Struct("=BBBBI")
# inet_diag_sockid: sport, dport (big endian), src[16], dst[16], then if, cookie[2]
_SOCKID_ADDR = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
_SOCKID_SIZE = _SOCKID_ADDR.size + _SOCKID_TAIL.size  # 48
# inet_diag_msg: family, state, timer, retrans; sockid; expires, rqueue, wqueue, uid, inode
_MSG_HEAD = struct.Struct("=BBBB")
_MSG_TAIL = struct.Struct("=IIIII")
_MSG_SIZE = _MSG_HEAD.size + _SOCKID_SIZE + _MSG_TAIL.size  # 72
_ERRNO = struct.Struct("=i")
_ANSWER_TIMEOUT_S = 1.0
_seq = count(1)

Address = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)


class PeerLookupError(Exception):
    """No uid for this connection's peer; the message says why (no address in it)."""


class SockDiagUnavailable(PeerLookupError):
    """The kernel does not answer sock_diag queries at all."""


class PeerNotFound(PeerLookupError):
    """The kernel answers, but has no live socket for the peer's 4-tuple."""


class NotLoopback(PeerLookupError):
    """The peer is not on a loopback address (its owner is not on this machine)."""


@dataclass(frozen=True)
class DiagAnswer:
    """The fields of one ``inet_diag_msg`` that the lookup checks."""

    family: int
    state: int
    src: bytes
    sport: int
    dst: bytes
    dport: int
    uid: int


def _packed(family: int, host: str) -> bytes:
    return socket.inet_pton(family, host).ljust(16, b"\0")


#: Host header names of loopback: a request naming any other host came through
#: a DNS name that points at 127.0.0.1 (DNS rebinding) and is refused.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def host_allowed(host: str | None) -> bool:
    """True for a Host header naming loopback (with any port)."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if ":" in host else host
    return name in LOOPBACK_HOSTS


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (a v4 peer of a dual-stack socket)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def diag_request(family: int, src: Address, dst: Address, seq: int) -> bytes:
    """A netlink message asking for the one TCP socket bound to *src*, connected to *dst*."""
    sockid = _SOCKID_ADDR.pack(
        src[1], dst[1], _packed(family, src[0]), _packed(family, dst[0])
    ) + _SOCKID_TAIL.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    body = _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED) + sockid
    return _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0
    ) + (body)


def parse_diag_answer(data: bytes, seq: int) -> DiagAnswer:
    """The ``inet_diag_msg`` answering request *seq* in *data* (one netlink datagram).

    :class:`PeerNotFound` for ``ENOENT`` (no such socket), :class:`PeerLookupError`
    for any other error or a datagram that holds no answer to *seq*.
    """
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, got_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        payload = offset + _NLMSGHDR.size
        if got_seq == seq and kind == NLMSG_ERROR and length >= _NLMSGHDR.size + _ERRNO.size:
            (error,) = _ERRNO.unpack_from(data, payload)
            if -error == errno.ENOENT:
                raise PeerNotFound("no live socket for the peer's address")
            raise PeerLookupError(f"sock_diag error: {os.strerror(-error)}")
        if got_seq == seq and kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _MSG_SIZE:
            family, state, _timer, _retrans = _MSG_HEAD.unpack_from(data, payload)
            sport, dport, src, dst = _SOCKID_ADDR.unpack_from(data, payload + _MSG_HEAD.size)
            tail = payload + _MSG_HEAD.size + _SOCKID_SIZE
            _expires, _rqueue, _wqueue, uid, _inode = _MSG_TAIL.unpack_from(data, tail)
            return DiagAnswer(family, state, src, sport, dst, dport, uid)
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    raise PeerLookupError("sock_diag gave no answer")


def loopback_peer_uid(family: int, local: Address, peer: Address) -> int:
    """The uid owning the other end of our connected TCP socket (*local* <- *peer*).

    The peer's socket is the one bound to *peer* and connected to *local*.
    Raises :class:`NotLoopback`, :class:`SockDiagUnavailable` (no netlink
    sock_diag here), :class:`PeerNotFound` or :class:`PeerLookupError`.
    """
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise PeerLookupError(f"not a TCP/IP socket (family {family})")
    if not is_loopback(str(peer[0])):
        raise NotLoopback("the peer is not on a loopback address")
    seq = next(_seq) & 0xFFFFFFFF
    request = diag_request(family, peer, local, seq)
    try:
        nl = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
        )
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            raise PeerLookupError(f"cannot open a netlink socket: {exc.strerror}") from None
        raise SockDiagUnavailable(f"no NETLINK_SOCK_DIAG: {exc.strerror or exc}") from None
    with nl:
        nl.settimeout(_ANSWER_TIMEOUT_S)
        try:
            nl.send(request)
            data = nl.recv(8192)
        except TimeoutError:
            raise PeerLookupError("sock_diag did not answer") from None
        except OSError as exc:
            raise SockDiagUnavailable(f"sock_diag query failed: {exc.strerror or exc}") from None
    answer = parse_diag_answer(data, seq)
    asked = (_packed(family, str(peer[0])), int(peer[1]), _packed(family, str(local[0])))
    if (answer.src, answer.sport, answer.dst) != asked or answer.dport != int(local[1]):
        raise PeerLookupError("sock_diag answered for another socket")
    if answer.state not in LIVE_PEER_STATES:
        # TIME_WAIT sockets report uid 0: their owner is gone.
        raise PeerNotFound(f"the peer's socket is not connected (TCP state {answer.state})")
    return answer.uid


def probe_sock_diag() -> str | None:
    """None when the kernel names our own uid for a loopback connection of ours, else why not."""
    try:
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            socket.create_connection(server.getsockname(), timeout=2),
        ):
            accepted, _ = server.accept()
            with accepted:
                uid = loopback_peer_uid(
                    accepted.family, accepted.getsockname(), accepted.getpeername()
                )
    except PeerLookupError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot open a loopback connection to test it: {exc.strerror or exc}"
    if uid != os.getuid():
        return f"sock_diag named uid {uid} for a socket of uid {os.getuid()}"
    return None


UNVERIFIED = "unverified"
_REFUSAL_LOG_INTERVAL_S = 60.0


class LoopbackAdmission:
    """The managed identity endpoint's rule for who may hold a connection.

    Implements :class:`~.connections.Admission` for :class:`~.protocol.HttpServer`.
    Counters (``refused``, ``unverified``) and the probe's outcome are shown
    by :meth:`status` (``GET /v1/status``, ``agentid-helper status``, ``doctor``).
    """

    def __init__(
        self,
        allowed_uids: Iterable[int] = (),
        *,
        max_per_peer: int = 16,
        own_uid: int | None = None,
    ) -> None:
        self.own_uid = os.getuid() if own_uid is None else own_uid
        self.allowed_uids = frozenset(allowed_uids)
        self.max_per_peer = max_per_peer
        self.unavailable: str | None = None  # why sock_diag cannot answer; None = it can
        self.probed = False
        self.refused = 0
        self.last_refusal: str | None = None  # why the last one was refused (uid, errno text)
        self.unverified = 0
        self._last_refusal_log: dict[int | str, float] = {}

    def allow(self, uids: Iterable[int]) -> None:
        """Replace the allow-list (a config reload)."""
        self.allowed_uids = frozenset(uids)

    def probe(self) -> None:
        """Find out once whether sock_diag answers here (before serving)."""
        self.unavailable = probe_sock_diag()
        self.probed = True
        if self.unavailable is not None:
            log.warning(
                "cannot tell which user is on the other end of a managed identity endpoint "
                "connection; serving unverified peers (the session header is still required)",
                reason=self.unavailable,
            )

    def admit(self, stream: trio.abc.Stream) -> Verdict:
        if not isinstance(stream, trio.SocketStream):
            return Verdict(peer=None, max_held=None)  # in-memory streams: nobody to check
        if not self.probed:
            self.probe()
        if self.unavailable is not None:
            # Fail open, said in status and doctor: the kernel cannot tell anyone apart.
            self.unverified += 1
            return Verdict(peer=UNVERIFIED, max_held=None)
        sock = stream.socket
        try:
            uid = loopback_peer_uid(sock.family, sock.getsockname(), sock.getpeername())
        except (PeerLookupError, OSError) as exc:
            # sock_diag answered the probe: a lookup that fails now fails closed,
            # whatever the reason, so that no peer can make us skip the check.
            return self._refuse("unknown", f"peer unknown: {exc}")
        if uid == self.own_uid:
            return Verdict(peer=f"uid {uid}", max_held=None)
        if uid in self.allowed_uids:
            return Verdict(peer=f"uid {uid}", max_held=self.max_per_peer)
        return self._refuse(uid, f"uid {uid} is not allowed")

    def _refuse(self, who: int | str, reason: str) -> Verdict:
        self.refused += 1
        self.last_refusal = reason
        now = time.monotonic()
        # One line per peer and minute: a flood of refusals must not flood the log.
        if now - self._last_refusal_log.get(who, -math.inf) >= _REFUSAL_LOG_INTERVAL_S:
            self._last_refusal_log[who] = now
            log.warning(
                "refused a managed identity endpoint connection before reading it",
                reason=reason,
                refused_total=self.refused,
            )
        return Verdict(peer=None, max_held=None, refusal=reason)

    def status(self) -> dict[str, Any]:
        """What ``status`` shows: whether peers are checked, who is admitted, what was refused."""
        if not self.probed:
            check = "not probed"
        elif self.unavailable is None:
            check = "sock_diag"
        else:
            check = "unavailable"
        return {
            "peer_check": check,
            "peer_check_error": self.unavailable,
            "allowed_uids": sorted({self.own_uid, *self.allowed_uids}),
            "refused_connections": self.refused,
            "last_refusal": self.last_refusal,
            "unverified_connections": self.unverified,
        }
