"""The daemon's Unix socket: path, directory checks, stale sockets, systemd fds, peers.

The socket is the daemon's only access control besides ``SO_PEERCRED``: its
directory is 0700 and owned by the user, the socket itself is 0600 from birth
(bound under ``umask 0o177``, so there is no window in which another user
could connect). A socket file left by a crashed daemon is replaced; a live
daemon on the path makes us refuse to start, and so does anything at the path
that is not a socket (we never unlink a user's file).

With systemd socket activation (``LISTEN_FDS``) the passed socket is used as
is and never bound or removed: systemd owns it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import struct
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import trio

from agentid_client import paths, private_dir

APP_NAME = "agentid-helper"
SOCKET_NAME = "agentid-helper.sock"
SOCKET_ENV = "AGENTID_HELPER_SOCKET"
SD_LISTEN_FDS_START = 3
#: ``FileDescriptorName=`` of a socket unit's loopback TCP listener for the
#: sidecar's managed identity endpoint (identity_sessions.py): held by systemd
#: across daemon restarts, so the fixed port is never free for another uid.
IDENTITY_ENDPOINT_FD_NAME = "managed-identity"
#: The listen backlog: the kernel's maximum (net.core.somaxconn caps it), as the
#: socket unit's Backlog= default. Clients queue there while the daemon is at
#: max_connections or restarting.
DEFAULT_BACKLOG = socket.SOMAXCONN
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_PATH_BYTES = 107


class ListenerError(Exception):
    """The socket cannot be set up; the message says why and what to do."""


class AlreadyRunning(ListenerError):
    """Another daemon is serving on the socket path."""


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def default_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    """``AGENTID_HELPER_SOCKET`` (from *environ*) or ``<runtime dir>/agentid-helper/<socket>``.

    The runtime directory is the client's answer (agentid_client.paths follows
    platformdirs' ``user_runtime_dir`` rules, from the process environment):
    client and daemon must agree on the path. Where platformdirs would raise
    for a ``<tmp>/runtime-<uid>`` made by another user, the private-directory
    check refuses it with a message naming the owner.
    """
    env = os.environ if environ is None else environ
    override = env.get(SOCKET_ENV)
    if override:
        return Path(override).expanduser()
    return Path(paths.runtime_base()) / APP_NAME / SOCKET_NAME


def ensure_private_dir(path: Path, *, create: bool = True) -> None:
    """Make sure *path* is a private directory of ours (the client's rule, in one place).

    Missing directories (and missing parents) are created 0700 by ``mkdir``,
    which never adopts a name someone else created first; an existing one
    must pass :mod:`agentid_client.private_dir`'s rule (real directory, ours,
    no group/other bits, ancestors nobody else can swap). Otherwise a clear
    :class:`ListenerError` (exit 5).
    """
    try:
        if create:
            private_dir.make_private_dir(os.fspath(path), os.getuid())
        else:
            private_dir.check_private_dir(os.fspath(path), os.getuid())
    except private_dir.PrivateDirError as exc:
        raise ListenerError(
            f"refusing the socket directory {exc}; set XDG_RUNTIME_DIR to a private "
            "directory of yours, or choose another path with AGENTID_HELPER_SOCKET"
        ) from None


def peer_credentials(sock: socket.socket | trio.socket.SocketType) -> PeerCred:
    """``SO_PEERCRED`` of a connected Unix socket."""
    size = struct.calcsize("3i")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid=pid, uid=uid, gid=gid)


def peer_allowed(cred: PeerCred | None, *, uid: int | None = None) -> bool:
    """Only our own uid may talk to us (root included: it is someone else's daemon)."""
    if cred is None:  # not a Unix socket (in-memory tests): nothing to check
        return True
    return cred.uid == (os.getuid() if uid is None else uid)


def systemd_listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[tuple[int, str]]:
    """File descriptors passed by systemd socket activation, as ``(fd, name)``.

    Only honoured when ``LISTEN_PID`` is our pid. The ``LISTEN_*`` variables
    are removed afterwards (when *unset*) so that children do not inherit them.
    """
    env = os.environ if environ is None else environ
    try:
        pid = env.get("LISTEN_PID")
        count = env.get("LISTEN_FDS")
        names_raw = env.get("LISTEN_FDNAMES", "")
        if not count or not pid:
            return []
        try:
            if int(pid) != os.getpid():
                return []
            n = int(count)
        except ValueError as exc:
            raise ListenerError(f"invalid LISTEN_PID/LISTEN_FDS: {exc}") from exc
        names = names_raw.split(":") if names_raw else []
        result = []
        for i in range(max(n, 0)):
            fd = SD_LISTEN_FDS_START + i
            os.set_inheritable(fd, False)
            result.append((fd, names[i] if i < len(names) else "unknown"))
        return result
    finally:
        if unset:
            for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                env.pop(var, None)


def socket_from_fd(fd: int) -> trio.socket.SocketType:
    """Wrap a systemd-passed fd; it must be a listening AF_UNIX stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenerError(f"systemd passed fd {fd}, which is not a socket: {exc}") from exc
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ListenerError(
            f"systemd passed fd {fd}, which is not a Unix stream socket "
            "(agentid-helper.socket must use ListenStream=)"
        )
    sock.setblocking(False)
    return trio.socket.from_stdlib_socket(sock)


@dataclass
class OpenedListener:
    """A listening socket plus what we must undo on shutdown."""

    listener: trio.SocketListener
    path: str | None
    owned: bool  # we bound it (so we remove it); False for systemd sockets
    #: The sidecar endpoint's TCP listener passed by systemd, if any.
    identity_endpoint: trio.socket.SocketType | None = None
    _inode: tuple[int, int] | None = None
    _lock_fd: int | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        """Close the socket and remove its file if we created it (and it is still ours)."""
        await self.listener.aclose()
        if self.owned and self.path and self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        if self._lock_fd is not None:
            if self.path:
                # Unlink while still holding the lock (see _take_lock for the race).
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + ".lock")
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


async def _probe(path: str) -> PeerCred | bool | None:
    """Connect to *path*: PeerCred/True if something answers, False if nothing listens."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.move_on_after(2):
            try:
                await sock.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                return False
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    return False
                raise ListenerError(f"cannot probe existing socket {path}: {exc}") from exc
            try:
                return peer_credentials(sock)
            except OSError:
                return True
        # connect() hung: a backlog full of a live but busy daemon
        return True
    finally:
        sock.close()


def _already_running(path: str, probe: PeerCred | bool | None) -> AlreadyRunning:
    pid = f" (pid {probe.pid})" if isinstance(probe, PeerCred) and probe.pid > 0 else ""
    return AlreadyRunning(
        f"another agentid-helper daemon is already serving on {path}{pid}; "
        "stop it first or use another AGENTID_HELPER_SOCKET"
    )


def _take_lock(path: str) -> int:
    """An advisory lock next to the socket: two daemons starting at once cannot both bind.

    The lock file is removed on shutdown, so after locking we check that the
    path still names the file we locked (another daemon may have unlinked it
    between our open and our flock); if not, we try again on the new file.
    """
    lock_path = path + ".lock"
    for _ in range(10):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked, current = os.fstat(fd), os.stat(lock_path)
        except BlockingIOError:
            os.close(fd)
            raise
        except FileNotFoundError:
            os.close(fd)
            continue
        if (locked.st_dev, locked.st_ino) == (current.st_dev, current.st_ino):
            return fd
        os.close(fd)
    raise BlockingIOError(errno.EAGAIN, "lock file keeps changing")


async def bind_unix_listener(path: Path, *, backlog: int = DEFAULT_BACKLOG) -> OpenedListener:
    """Bind a 0600 Unix socket at *path* after the directory and stale-socket checks."""
    spath = os.fspath(path)
    if len(os.fsencode(spath)) > _MAX_PATH_BYTES:
        raise ListenerError(
            f"socket path {spath} is longer than {_MAX_PATH_BYTES} bytes; "
            "set AGENTID_HELPER_SOCKET to a shorter path"
        )
    ensure_private_dir(path.parent)
    try:
        lock_fd = _take_lock(spath)
    except BlockingIOError:
        raise _already_running(spath, await _probe(spath)) from None
    except OSError as exc:
        raise ListenerError(f"cannot create lock file {spath}.lock: {exc.strerror}") from exc
    try:
        _check_existing(spath)
        if os.path.lexists(spath):
            probe = await _probe(spath)
            if probe is not False:
                raise _already_running(spath, probe)
            os.unlink(spath)  # stale: nobody listens
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                await sock.bind(spath)
            finally:
                os.umask(old)
            os.chmod(spath, 0o600)
            st = os.lstat(spath)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise ListenerError(f"cannot listen on {spath}: {exc.strerror or exc}") from exc
    except BaseException:
        os.close(lock_fd)
        raise
    return OpenedListener(
        listener=trio.SocketListener(sock),
        path=spath,
        owned=True,
        _inode=(st.st_dev, st.st_ino),
        _lock_fd=lock_fd,
    )


def _check_existing(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"{path} exists and is not a socket; refusing to replace it")
    if st.st_uid != os.getuid():
        raise ListenerError(f"socket {path} is owned by uid {st.st_uid}; refusing to replace it")


async def open_listener(
    path: Path | None = None,
    *,
    environ: MutableMapping[str, str] | None = None,
    backlog: int = DEFAULT_BACKLOG,
) -> OpenedListener:
    """The systemd-passed socket if there is one, else a socket bound at *path*."""
    env = os.environ if environ is None else environ
    fds = systemd_listen_fds(env)
    endpoint = [fd for fd, name in fds if name == IDENTITY_ENDPOINT_FD_NAME]
    fds = [(fd, name) for fd, name in fds if name != IDENTITY_ENDPOINT_FD_NAME]
    inherited = tcp_listener_from_fd(endpoint[0]) if endpoint else None
    if fds:
        # One Unix socket is all we serve (agentid-helper.socket declares one).
        fd, _name = fds[0]
        sock = socket_from_fd(fd)
        try:
            name = sock.getsockname()
        except OSError:
            name = None
        spath = name if isinstance(name, str) and name else None
        return OpenedListener(
            listener=trio.SocketListener(sock),
            path=spath,
            owned=False,
            identity_endpoint=inherited,
        )
    opened = await bind_unix_listener(path or default_socket_path(env), backlog=backlog)
    opened.identity_endpoint = inherited
    return opened


def tcp_listener_from_fd(fd: int) -> trio.socket.SocketType:
    """Wrap the passed ``managed-identity`` fd: a listening TCP socket on loopback."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenerError(f"systemd passed fd {fd}, which is not a socket: {exc}") from exc
    name = sock.getsockname()
    if (
        sock.family not in (socket.AF_INET, socket.AF_INET6)
        or sock.type != socket.SOCK_STREAM
        or not isinstance(name, tuple)
        or name[0] not in ("127.0.0.1", "::1")
    ):
        sock.detach()
        raise ListenerError(
            f"systemd passed fd {fd} as {IDENTITY_ENDPOINT_FD_NAME!r}, which is not a TCP "
            "socket on loopback (use ListenStream=127.0.0.1:PORT)"
        )
    sock.setblocking(False)
    return trio.socket.from_stdlib_socket(sock)
