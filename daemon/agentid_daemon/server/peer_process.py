"""A pidfd for the process on the other end of a Unix connection, without a pid race.

An identity session lives as long as the process that registered it, so the
daemon holds a pidfd for that process. Opening it by the pid that
``SO_PEERCRED`` reports is racy: the peer may exit after sending its request
and its pid be reused (by another uid, too) before ``pidfd_open`` runs; the
session would then live as long as the stranger's process.

- ``SO_PEERPIDFD`` (Linux >= 6.5) gives the pidfd of the very process that
  connected, taken by the kernel at ``connect()``: no pid is looked up again.
- Without it, ``pidfd_open(pid)`` is followed by two checks that fail for a
  recycled pid: the process must be one we may signal
  (``pidfd_send_signal(pidfd, 0)``: EPERM for another uid's process, ESRCH
  once it is gone), and our connection's other end must still be open.
  A process's descriptors are closed when it exits, before its pid can be
  reused; so an open peer end, checked after the pidfd was opened, means the
  peer had not exited when the pidfd was taken.

Either way the pidfd's process must still be alive when the session starts.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct

from ..core.errors import ConfigurationError, InvalidRequest

#: ``SO_PEERPIDFD`` from <asm-generic/socket.h>; Python's socket module does not name it.
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)


def open_peer_pidfd(sock: socket.socket, pid: int, *, use_so_peerpidfd: bool = True) -> int:
    """A pidfd for the peer *pid* of the connected Unix socket *sock* (the caller closes it).

    *sock* is a stdlib socket for the connection (a ``socket.fromfd`` copy of
    the server's); it is only asked, never read from.

    *use_so_peerpidfd* False takes the ``pidfd_open`` path even where the
    kernel has ``SO_PEERPIDFD`` (kernels before 6.5 take it anyway).
    Raises :class:`InvalidRequest` when the peer is gone or its pid now names
    another process.
    """
    pidfd = _kernel_peer_pidfd(sock) if use_so_peerpidfd else None
    if pidfd is None:
        pidfd = _open_pidfd(pid)
        try:
            _check_still_peer(sock, pidfd, pid)
        except BaseException:
            os.close(pidfd)
            raise
    else:
        try:
            _check_alive(pidfd, pid)
        except BaseException:
            os.close(pidfd)
            raise
    return pidfd


def _kernel_peer_pidfd(sock: socket.socket) -> int | None:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, struct.calcsize("i"))
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            return None  # an older kernel: the fallback below
        if exc.errno == errno.ESRCH:
            raise InvalidRequest("the calling process has already exited") from None
        raise
    fd = int(struct.unpack("i", raw)[0])
    os.set_inheritable(fd, False)
    return fd


def _open_pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise InvalidRequest(f"process {pid} has already exited") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EINVAL):
            raise ConfigurationError(
                "this kernel has no pidfd_open (Linux >= 5.3 is needed to tie a session "
                "to its process); run exec with --no-identity-endpoint"
            ) from None
        raise


def _check_alive(pidfd: int, pid: int) -> None:
    """Signal 0 through the pidfd: the process exists and is one we may signal."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        raise InvalidRequest(f"process {pid} has already exited") from None
    except PermissionError:
        raise InvalidRequest(
            f"process {pid} is no longer the caller (its pid now names another user's process)"
        ) from None


def _check_still_peer(sock: socket.socket, pidfd: int, pid: int) -> None:
    _check_alive(pidfd, pid)
    try:
        peeked = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return  # open, nothing sent beyond the request: the peer is waiting for us
    except OSError:
        peeked = b""
    if not peeked:
        raise InvalidRequest(
            f"process {pid} closed its connection before its session was set up "
            "(it exited, and its pid may already name another process)"
        )
