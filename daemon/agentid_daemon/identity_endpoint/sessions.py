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
:class:`~agentid_daemon.server.loopback_peers.LoopbackAdmission` first: only our own uid and
``[daemon] managed_identity_allowed_uids`` are served, other uids are closed
before a byte is read. Headers are found by their SHA-256 and confirmed with
``hmac.compare_digest``; they never appear in a log line or in ``status``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentid_client.private_dir import PrivateDirError, make_private_dir

from ..core.errors import AgentIdError, ConfigurationError, InvalidRequest
from ..core.logs import get_logger
from ..core.secret_files import FileMissing, read_credential_file
from ..server.protocol import Limits

log = get_logger("agentid_daemon.identity_endpoint.sessions")

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
