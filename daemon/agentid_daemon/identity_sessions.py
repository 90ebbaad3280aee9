"""Sessions of the managed identity endpoint: which header gets which token, until when.

A session binds one random header (``IDENTITY_HEADER``, 256 bits) to one
token selection (the request fields of ``POST /v1/token`` without a scope:
the SDK names the resource per request). Two kinds:

- **exec sessions**, registered over the Unix socket (``POST
  /v1/identity-sessions``) by ``agentid-helper exec``, which then execs the
  command in the same process. The daemon opens a pidfd for that pid and ends
  the session when the process exits: its header is refused from then on,
  and a recycled pid can never inherit it.
- **the sidecar session** (``[daemon] managed_identity_listen``,
  ``managed_identity_header_file``, ``managed_identity_profile``): fixed for
  the daemon's lifetime, for a pod whose app container cannot reach the
  daemon's pid namespace.

The TCP listener (loopback only) is opened at start-up for a sidecar, else on
the first exec session, so a daemon nobody asks for an endpoint exposes no
port. Every connection to it passes :class:`~.loopback_peers.LoopbackAdmission`
first: only our own uid and ``[daemon] managed_identity_allowed_uids`` are
served, other uids are closed before a byte is read. Headers are found by
their SHA-256 and confirmed with ``hmac.compare_digest``; they never appear
in a log line or in ``status``.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._by_digest: dict[bytes, IdentitySession] = {}

    def __len__(self) -> int:
        return len(self._by_digest)

    @staticmethod
    def _digest(header: str) -> bytes:
        return hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()

    def add(self, session: IdentitySession) -> None:
        if len(self._by_digest) >= self.max_sessions:
            raise TooManySessions(
                f"too many managed identity sessions ({self.max_sessions}); "
                "they end when their processes exit"
            )
        self._by_digest[self._digest(session.header)] = session

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


def _parse_header(path: str, raw: bytes) -> str:
    try:
        header = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        header = ""
    if not MIN_HEADER_CHARS <= len(header) <= MAX_HEADER_CHARS or not set(header) <= (
        _HEADER_ALPHABET
    ):
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


class IdentitySessions:
    """The endpoint's listener, its sessions and their pidfd watchers."""

    def __init__(
        self,
        tokens: TokenSource,
        *,
        sidecar: SidecarSettings | None = None,
        limits: Limits | None = None,
        max_sessions: int = MAX_SESSIONS,
        metrics: RequestCounter | None = None,
        allowed_uids: Iterable[int] = (),
    ) -> None:
        from .mi_endpoint import MIEndpoint  # here: it imports this module

        self.table = SessionTable(max_sessions)
        self.endpoint = MIEndpoint(self.table, tokens, metrics)
        self.admission = LoopbackAdmission(allowed_uids, max_per_peer=MAX_CONNECTIONS_PER_OTHER_UID)
        self.server = HttpServer(
            self.endpoint.handle_request, limits=limits or MI_LIMITS, admission=self.admission
        )
        self.sidecar = sidecar
        self._listener: trio.SocketListener | None = None
        self._address: tuple[str, int] | None = None
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()

    @property
    def url(self) -> str | None:
        if self._address is None:
            return None
        host, port = self._address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{P.PATH}"

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

    async def prepare(self) -> None:
        """Sidecar mode: bind the fixed address and load the header before serving.

        Called before the daemon's nursery opens, so that a bad header file
        (:class:`ConfigurationError`) or a taken port (:class:`ListenerError`)
        stops start-up with its own exit code.
        """
        if self.sidecar is None:
            return
        header = await trio.to_thread.run_sync(load_or_create_header, self.sidecar.header_file)
        await self._bind(*self.sidecar.listen)
        profile = self.sidecar.profile
        fields = {"profile": profile} if profile else {}
        self.table.add(IdentitySession(header, fields, label=f"sidecar {session_label(fields)}"))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._listener is not None:
                await nursery.start(self._serve, self._listener)
            task_status.started()
            await trio.sleep_forever()

    async def register(self, fields: dict[str, Any], pid: int) -> dict[str, Any]:
        """A new exec session for process *pid*; the answer holds its header."""
        if self._nursery is None:
            raise ConfigurationError("the managed identity endpoint is not running")
        await self._ensure_listener()
        pidfd = _open_pidfd(pid)
        session = IdentitySession(new_header(), dict(fields), label=session_label(fields), pid=pid)
        try:
            self.table.add(session)
        except BaseException:
            os.close(pidfd)
            raise
        self._nursery.start_soon(self._watch, session, pidfd)
        log.info(
            "identity session started", session=session.label, pid=pid, sessions=len(self.table)
        )
        return {"identity_endpoint": self.url, "identity_header": session.header, "pid": pid}

    async def _ensure_listener(self) -> None:
        async with self._lock:
            if self._listener is None:
                await self._bind("127.0.0.1", 0)
                assert self._nursery is not None and self._listener is not None
                await self._nursery.start(self._serve, self._listener)

    async def _bind(self, host: str, port: int) -> None:
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise ListenerError(
                f"cannot listen on {host}:{port} for the managed identity endpoint: "
                f"{exc.strerror or exc}"
            ) from None
        listener = listeners[0]
        for extra in listeners[1:]:
            await extra.aclose()
        name = listener.socket.getsockname()
        self._listener, self._address = listener, (str(name[0]), int(name[1]))

    async def _serve(
        self, listener: trio.SocketListener, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            if not self.admission.probed:
                # Whatever way the listener came: whether peers can be told apart here.
                await trio.to_thread.run_sync(self.admission.probe)
            log.info("managed identity endpoint listening", endpoint=self.url)
            await self.server.serve(listener, task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def _watch(self, session: IdentitySession, pidfd: int) -> None:
        """End *session* when its process exits (the pidfd becomes readable)."""
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            self.table.remove(session)
            os.close(pidfd)
            log.info(
                "identity session ended",
                session=session.label,
                pid=session.pid,
                sessions=len(self.table),
            )


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
