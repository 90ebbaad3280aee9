"""Sessions of the managed identity endpoint: which header gets which token, until when.

A session binds one random header (``IDENTITY_HEADER``, 256 bits) to one
token selection (the request fields of ``POST /v1/token`` without a scope:
the SDK names the resource per request). Two kinds:

- **exec sessions**, registered over the Unix socket (``POST
  /v1/identity-sessions``) by ``agentid-helper exec``. The exec process binds
  the endpoint's TCP listener itself (127.0.0.1, port 0) and sends it with the
  request (SCM_RIGHTS); it keeps its own copy, and so does the command it
  runs, for as long as they live. A daemon that exits or restarts therefore
  never frees a port that a live command holds in ``IDENTITY_ENDPOINT``:
  nobody else can bind it, and a restarted daemon gets the same listener and
  header back when exec registers again. The session is bound to the
  registering process by a pidfd taken without a pid race (peer_process.py)
  and ends when that process exits; its header is refused from then on.
  One process may hold at most :data:`MAX_SESSIONS_PER_PROCESS` sessions.
- **the sidecar session** (``[daemon] managed_identity_listen``,
  ``managed_identity_header_file``, ``managed_identity_profile``): fixed for
  the daemon's lifetime, for a pod whose app container cannot reach the
  daemon's pid namespace. Its listener is inherited from the service manager
  when one passes it (a socket unit's ``FileDescriptorName=managed-identity``),
  else bound at start-up; a port already taken stops start-up (exit 5) and
  the header file is replaced, so a header that reached the squatter is dead.

Each exec session has a loopback port of its own, bound by ``agentid-helper
exec`` and passed to the daemon (SCM_RIGHTS); the sidecar's listener is opened
at start-up. All listeners feed one :class:`~.protocol.HttpServer` (one
connection limit), and every connection passes
:class:`~.loopback_peers.LoopbackAdmission` first: only our own uid and
``[daemon] managed_identity_allowed_uids`` are served, other uids are closed
before a byte is read. Headers are found by their SHA-256 and confirmed with
``hmac.compare_digest``; they never appear in a log line or in ``status``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from agentid_client.private_dir import PrivateDirError, make_private_dir

from . import mi_protocol as P
from .errors import AgentIdError, ConfigurationError, InvalidRequest
from .listener import ListenerError
from .logs import get_logger
from .loopback_peers import LoopbackAdmission
from .protocol import HttpServer, Limits
from .secret_files import FileMissing, read_credential_file

if TYPE_CHECKING:
    from .mi_endpoint import RequestCounter, TokenSource

log = get_logger("agentid_daemon.identity_sessions")

HEADER_BYTES = 32  # 256 random bits (the contract asks for at least 128)
# A header given in a file (sidecar) must be at least this long: 32 characters
# of the allowed alphabet carry >= 128 bits when generated at random.
MIN_HEADER_CHARS = 32
MAX_HEADER_CHARS = 512
_HEADER_ALPHABET = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)
MAX_SESSIONS = 1024
#: Live sessions one process may hold: far more than any exec needs, and it
#: leaves the table to the user's other processes (MAX_SESSIONS in all).
MAX_SESSIONS_PER_PROCESS = 32
# The endpoint answers GETs without bodies from local SDKs, which send their
# request as soon as they connect: a connection silent for 2 s is dropped.
MI_LIMITS = Limits(
    max_header_bytes=16 * 1024,
    max_body_bytes=1024,
    request_timeout_s=10.0,
    idle_timeout_s=30.0,
    max_connections=64,
    first_byte_timeout_s=2.0,
)
# What one allow-listed uid other than ours may hold of MI_LIMITS.max_connections.
MAX_CONNECTIONS_PER_OTHER_UID = 16


class TooManySessions(AgentIdError):
    http_status = 503
    error_code = "too_many_sessions"


class TooManyProcessSessions(AgentIdError):
    """One process asked for more than its share; the client exits 2 (docs/api.md)."""

    http_status = 429
    error_code = "too_many_sessions"


@dataclass(frozen=True, eq=False)
class IdentitySession:
    """One header -> one selection; ``pid`` None for the sidecar's fixed session."""

    header: str = field(repr=False)
    fields: Mapping[str, Any] = field(repr=False)  # may hold an OBO user token
    label: str
    pid: int | None = None


def new_header() -> str:
    return secrets.token_urlsafe(HEADER_BYTES)


def session_label(fields: Mapping[str, Any]) -> str:
    """A log-safe name for a selection: its profile or agent id."""
    if fields.get("profile"):
        return f"profile {fields['profile']}"
    if fields.get("agent_identity_app_id"):
        return f"agent {fields['agent_identity_app_id']}"
    return "default profile"


class SessionTable:
    """Sessions by header digest; lookups confirm the header in constant time."""

    def __init__(
        self,
        max_sessions: int = MAX_SESSIONS,
        max_per_process: int = MAX_SESSIONS_PER_PROCESS,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_per_process = max_per_process
        self._by_digest: dict[bytes, IdentitySession] = {}
        self._per_pid: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self._by_digest)

    @staticmethod
    def _digest(header: str) -> bytes:
        return hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()

    def add(self, session: IdentitySession) -> None:
        pid = session.pid
        if pid is not None and self._per_pid[pid] >= self.max_per_process:
            # Checked first: a process over its share is told so, whatever the total.
            raise TooManyProcessSessions(
                f"process {pid} already holds {self.max_per_process} managed identity "
                "sessions; they end when it exits"
            )
        if len(self._by_digest) >= self.max_sessions:
            raise TooManySessions(
                f"too many managed identity sessions ({self.max_sessions}); "
                "they end when their processes exit"
            )
        digest = self._digest(session.header)
        if digest in self._by_digest:
            raise InvalidRequest("this identity header already belongs to a live session")
        self._by_digest[digest] = session
        if pid is not None:
            self._per_pid[pid] += 1

    def find(self, header: str) -> IdentitySession | None:
        if not header or len(header) > MAX_HEADER_CHARS:
            return None
        found = self._by_digest.get(self._digest(header))
        if found is None:
            return None
        given = header.encode("utf-8", "surrogateescape")
        return found if hmac.compare_digest(found.header.encode(), given) else None

    def remove(self, session: IdentitySession) -> None:
        digest = self._digest(session.header)
        if self._by_digest.get(digest) is session:
            del self._by_digest[digest]
            if session.pid is not None:
                self._per_pid[session.pid] -= 1
                if self._per_pid[session.pid] <= 0:
                    del self._per_pid[session.pid]


HEADER_FILE = "managed_identity_header_file"


def load_or_create_header(path: str) -> str:
    """The sidecar's header: read from *path*, or created there (0600) when absent.

    A Kubernetes Secret mounted in both containers is the usual source (the
    app reads it as ``IDENTITY_HEADER`` via ``secretKeyRef``). The file is a
    credential file: it is read the one way :mod:`secret_files` reads them
    (regular file, size cap, non-blocking open, timeout, and the file-trust
    rule: ours or root's, not readable or writable by others, nothing on its
    path writable by them). Errors name the file and the fix, never its content.
    """
    try:
        raw = read_credential_file(path, HEADER_FILE)
    except FileMissing:
        return _create_header(path)
    return _parse_header(path, raw)


def _create_header(path: str) -> str:
    """A new header in a new 0600 file, inside a private directory (made 0700 if absent)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        make_private_dir(directory)
    except PrivateDirError as exc:
        raise ConfigurationError(
            f"{HEADER_FILE} {path}: refusing to create it: {exc}; fix: chmod 700 {exc.path} "
            "if it is yours, or name a file in a private directory of yours"
        ) from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:  # created meanwhile: read it by the rule
        return _parse_header(path, read_credential_file(path, HEADER_FILE))
    except OSError as exc:
        raise ConfigurationError(
            f"{HEADER_FILE} {path}: cannot create it ({exc.strerror})"
        ) from None
    header = new_header()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(header + "\n")
    log.info("created the managed identity header file", path=path)
    return header


def valid_header(header: str) -> bool:
    """Long enough to carry >= 128 random bits, of the header alphabet only."""
    return MIN_HEADER_CHARS <= len(header) <= MAX_HEADER_CHARS and set(header) <= (_HEADER_ALPHABET)


def retire_header_file(path: str) -> str:
    """Replace the sidecar's header file with a fresh header; says what was done.

    Called when another process holds the sidecar's port: the app may have
    sent the old header there, so the old header must never be served again.
    The new one is written next to the file and renamed over it (0600).
    A file we cannot replace (a read-only Secret mount) is left alone and the
    answer tells the operator to replace it.
    """
    file = Path(path)
    temp = file.with_name(f".{file.name}.{secrets.token_hex(8)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(new_header() + "\n")
        os.replace(temp, file)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        return (
            f"whoever holds the port may have received the header: replace the header in "
            f"{file} (cannot replace it here: {exc.strerror}) and restart the app"
        )
    log.warning("replaced the managed identity header file: the port was taken", path=str(file))
    return (
        f"whoever holds the port may have received the header, so {file} now holds a new "
        "one: restart the app with it once the port is free"
    )


def _parse_header(path: str, raw: bytes) -> str:
    try:
        header = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        header = ""
    if not valid_header(header):
        raise ConfigurationError(
            f"{HEADER_FILE} {path}: must hold one random value of "
            f"{MIN_HEADER_CHARS} to {MAX_HEADER_CHARS} characters (letters, digits, -._~+/=)",
            hint="generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return header


@dataclass(frozen=True)
class SidecarSettings:
    """``[daemon] managed_identity_*``: a fixed endpoint and session for a pod."""

    listen: tuple[str, int]
    header_file: str
    profile: str | None = None


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
        from .mi_endpoint import MIEndpoint  # here: it imports this module

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
