"""The cache hit at the interpreter's floor: ``get``, ``kubectl-credential`` and
``git-credential get`` in their ordinary success case, before the full client loads.

Why: these commands run on every script, kubectl and git call, and a warm hit
is one socket round trip (under 1 ms at the daemon, bench/RESULTS.md); the rest
is the interpreter and what the client imports. ``python -I -S -c pass`` has
``posix``, ``sys``, ``time`` and ``io`` loaded already; this module needs
those and ``_socket`` (plus :mod:`.jsonlite` for the daemon's answer): no
``os`` (its ``environ`` mapping alone costs ~1.3 ms of ``_collections_abc``),
no ``struct``, no command table. The launcher (client/launcher/agentid-helper)
calls :func:`main`; nothing here runs at import time.

What this module does not handle goes to the full client
(:func:`agentid_client.cli.main`) unchanged, so it behaves exactly as without
this module: an option outside :data:`SELECTION_FLAGS`, ``--help``, a socket
path or directory that is not plainly private (see :func:`plain_private`), no
daemon, a peer of another uid, any answer but a fresh 200, ``--format json``
or ``az``. What was done by then is handed over, never repeated: git's stdin
as read, and an opened connection (sent or not, its answer as received) for
the full client to finish (:func:`agentid_client.daemon_api.adopt`).

One source per fact: the socket's names and environment variables, the
request's bytes, the peer's uid and the token and header formats live here
and the full client imports them (paths.py, transport.py, trust.py,
formats.py, daemon_api.py); the few facts copied here, the selection flags,
the modes and the private-directory test (a strict subset of
private_dir.py's rule, which then decides whatever this one refuses), are
tied to their originals by tests/client/test_client_hotpath_ties.py, and
tests/client/test_client_hotpath_differential.py compares this path's output
with the full client's for a corpus of argv and answers.
"""

# No `from __future__ import annotations` (an import of its own, ~0.3 ms): the
# annotations that name what is not imported here are strings.
import posix
import sys
import time

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    import _socket
    from typing import Any

APP_NAME = "agentid-helper"
SOCKET_NAME = "agentid-helper.sock"
SOCKET_ENV = "AGENTID_HELPER_SOCKET"
TIMEOUT_ENV = "AGENTID_HELPER_TIMEOUT"
#: How long a call may take in all (connect, wait for the daemon, read the answer):
#: ``--timeout`` / ``AGENTID_HELPER_TIMEOUT`` override it, up to MAX_TIMEOUT_S.
DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 86400.0
#: The output formats of `get`; the first two are rendered here (:func:`render_plain`).
FORMATS = ("token", "json", "header", "az")
#: Copies of contract.MODES and of the selection flags (commands.SELECTION_DESTS
#: spelled as flags, in that order: the request's field order), tied by a test.
MODES = ("AutonomousApp", "OBO", "AutonomousUser")
SELECTION_FLAGS = (
    "--profile",
    "--tenant-id",
    "--blueprint-app-id",
    "--agent-identity-app-id",
    "--scope",
    "--mode",
    "--user-upn",
    "--user-object-id",
)
_PEERCRED_SIZE = 12  # struct ucred: pid, uid, gid (three C ints)
_S_IFMT, _S_IFDIR, _S_ISVTX = 0o170000, 0o040000, 0o1000


def getenv(name: str) -> str | None:
    """``os.environ.get(name)`` without ``os``: decoded as os decodes it."""
    raw = posix.environ.get(name.encode())
    if raw is None:
        return None
    return raw.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def render_plain(token: str, fmt: str) -> str:
    """`get`'s ``token`` and ``header`` formats (formats.format_token's too)."""
    return f"Authorization: Bearer {token}" if fmt == "header" else token


def request_bytes(method: str, target: str, body: bytes | None) -> bytes:
    """The daemon request as the client sends it: one per connection, closed after."""
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        "User-Agent: agentid-helper\r\nAccept: application/json\r\n"
    )
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    elif method in ("POST", "PUT", "DELETE"):
        head += "Content-Length: 0\r\n"
    return (head + "\r\n").encode("ascii") + (body or b"")


def peer_uid(sock: "_socket.socket") -> int:
    """The uid of the process that listens on the other end of ``sock`` (SO_PEERCRED)."""
    import _socket

    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _PEERCRED_SIZE)
    return int.from_bytes(raw[4:8], sys.byteorder)


def _normal(path: str) -> bool:
    """An absolute path that ``os.path.abspath`` leaves as it is (no ``//``, ``.``, ``..``)."""
    return path.startswith("/") and all(p not in ("", ".", "..") for p in path[1:].split("/"))


def _plain_dir(path: str, me: int, private: bool) -> bool:
    try:
        st = posix.lstat(path)
    except OSError:
        return False
    mode = st.st_mode
    if mode & _S_IFMT != _S_IFDIR:  # a symlink too: lstat
        return False
    if private:
        return st.st_uid == me and not mode & 0o077
    return st.st_uid in (0, me) and (not mode & 0o022 or bool(mode & _S_ISVTX))


def plain_private(path: str, me: int) -> bool:
    """``path`` (normalised, absolute) is a real directory of ``me``, mode 0700 or
    stricter, below real directories of root or ``me`` that others cannot write
    (or sticky ones). A strict subset of private_dir.dir_problem's rule: False
    means "ask the full rule", which also follows trusted symlinks and knows
    read-only mounts and user namespaces."""
    if not _plain_dir(path, me, True):
        return False
    parent = path
    while parent != "/":
        parent = parent.rpartition("/")[0] or "/"
        if not _plain_dir(parent, me, False):
            return False
    return True


def plain_socket_path(me: int) -> str | None:
    """The socket's path when paths.socket_path() would pick it and its directory
    is plainly private (:func:`plain_private`); None: ask the full client."""
    override = getenv(SOCKET_ENV)
    if override:
        if not _normal(override):
            return None  # `~`, relative or unnormalised: expanduser/abspath decide
        directory = override.rpartition("/")[0]
        return override if directory and plain_private(directory, me) else None
    xdg = getenv("XDG_RUNTIME_DIR") or ""
    if xdg.startswith("/"):
        base = xdg if _normal(xdg) and plain_private(xdg, me) else None
    else:
        base = f"/run/user/{me}"
        base = base if plain_private(base, me) else None
    if base is None:
        return None
    directory = f"{base}/{APP_NAME}"
    return f"{directory}/{SOCKET_NAME}" if plain_private(directory, me) else None


def quiet_broken_pipe() -> int:
    """The reader went away (``| head``): stdout to /dev/null, exit 141 like other CLIs."""
    try:  # noqa: SIM105  # contextlib would be an import of its own
        posix.dup2(posix.open("/dev/null", posix.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    return 141


class Connection:
    """A connection this module opened, for the full client to finish: ``sent`` the
    request or not (a peer it did not trust), and the answer's bytes so far."""

    __slots__ = ("deadline", "path", "payload", "received", "sent", "sock")

    def __init__(
        self, path: str, payload: dict[str, str], sock: "_socket.socket", deadline: float
    ) -> None:
        self.path = path
        self.payload = payload
        self.sock = sock
        self.deadline = deadline
        self.sent = False
        self.received = b""

    def __repr__(self) -> str:  # the answer may hold a token
        return f"Connection({self.path!r}, sent={self.sent}, <{len(self.received)} bytes>)"


class Handoff:
    """What the hot path did before it gave up: the full client continues from it."""

    __slots__ = ("connection", "stdin_text")

    def __init__(self, stdin_text: str | None = None, connection: "Connection | None" = None):
        self.stdin_text = stdin_text
        self.connection = connection


class _Recording:
    """Git's stdin as gitcred.parse_request reads it, kept for the full client."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __iter__(self) -> "_Recording":
        return self

    def __next__(self) -> str:
        line = sys.stdin.readline()
        if not line:
            raise StopIteration
        self.lines.append(line)
        return line


def _timeout(raw: str | None) -> float | None:
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value <= MAX_TIMEOUT_S else None


def _parse(command: str, args: list[str]) -> "tuple[dict[str, Any], list[str]] | None":
    """cliargs.parse for the flags this module knows; None for anything else."""
    flags = ("--profile", "--timeout") if command == "git-credential" else SELECTION_FLAGS
    opts: dict[str, Any] = {}
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        if not (flag in flags or flag == "--timeout" or (flag == "--format" and command == "get")):
            return None  # --help, --, another option: the full client's
        if not eq:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        if flag == "--scope":
            opts.setdefault("scope", []).append(value)
        else:
            opts[flag[2:].replace("-", "_")] = value
    return opts, positionals


def _fields(opts: "dict[str, Any]") -> dict[str, str] | None:
    """selection.request_fields for SELECTION_FLAGS; None when it would refuse."""
    fields: dict[str, str] = {}
    for flag in SELECTION_FLAGS:
        dest = flag[2:].replace("-", "_")
        value = opts.get(dest)
        if value is None:
            continue
        if dest == "mode" and value not in MODES:  # the parser's choices: before the strip
            return None
        if dest == "scope":
            value = " ".join(s for chunk in value for s in chunk.split())
        value = value.strip()
        if not value:
            return None
        fields[dest] = value
    return fields


def _json_str(text: str) -> str | None:
    """``text`` as a JSON string when it needs no escape (jsonlite.dumps' output then)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return None


def _body(fields: dict[str, str]) -> bytes | None:
    parts = []
    for name, value in fields.items():
        quoted = _json_str(value)
        if quoted is None:
            return None
        parts.append(f'"{name}":{quoted}')
    return ("{" + ",".join(parts) + "}").encode("ascii")


_WS = " \t\n\r"
_LITERALS = {"true": True, "false": False, "null": None}


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _json_scalar(text: str, i: int) -> "tuple[Any, int]":
    if text.startswith('"', i):
        end = text.find('"', i + 1)
        value = text[i + 1 : end]
        if end < 0 or not value.isprintable():  # control characters are not JSON
            raise ValueError("not a plain string")
        return value, end + 1
    end = i
    while end < len(text) and text[end] not in ',}]"' + _WS:
        end += 1
    word = text[i:end]
    if word in _LITERALS:
        return _LITERALS[word], end
    digits = word[1:] if word.startswith("-") else word
    if digits.isascii() and digits.isdigit() and (digits == "0" or digits[0] != "0"):
        return int(word), end
    raise ValueError("not a literal or an integer")


def flat_json(text: str) -> "dict[str, Any]":
    """A JSON object whose values are strings without escapes, integers, booleans
    or null (the daemon's token answer), decoded as jsonlite.loads decodes it.
    ValueError for anything else, valid JSON or not: jsonlite decides then."""
    if "\\" in text:
        raise ValueError("an escape")
    out: dict[str, Any] = {}
    i = _skip_ws(text, 0)
    if not text.startswith("{", i):
        raise ValueError("not an object")
    i = _skip_ws(text, i + 1)
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            if not text.startswith('"', i):
                raise ValueError("not a key")
            key, i = _json_scalar(text, i)
            i = _skip_ws(text, i)
            if not text.startswith(":", i):
                raise ValueError("no colon")
            value, i = _json_scalar(text, _skip_ws(text, i + 1))
            out[key] = value
            i = _skip_ws(text, i)
            if text.startswith(",", i):
                i = _skip_ws(text, i + 1)
                continue
            if text.startswith("}", i):
                i += 1
                break
            raise ValueError("no comma or closing brace")
    if text[i:].strip(_WS):
        raise ValueError("extra data")
    return out


def _content_length(head: bytes) -> int | None:
    """The answer's Content-Length when its head is a plain 200; None otherwise."""
    if not head.startswith(b"HTTP/1.1 200 "):
        return None
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = value.strip()
    return int(length) if length is not None and length.isdigit() else None


def _exchange(conn: Connection, body: bytes) -> "dict[str, Any] | None":
    """Send the request and read a 200's JSON; None (conn keeps what came) otherwise."""
    sock = conn.sock
    remaining = conn.deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    conn.sent = True  # from the first byte on: the full client never sends it again
    sock.sendall(request_bytes("POST", "/v1/token", body))
    length = None
    head_end = -1
    while True:
        if head_end < 0:
            head_end = conn.received.find(b"\r\n\r\n")
            if head_end >= 0:
                length = _content_length(conn.received[:head_end])
                if length is None:
                    return None
        if length is not None and len(conn.received) - head_end - 4 >= length:
            break
        remaining = conn.deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return None
        conn.received += chunk
    try:
        answer = flat_json(conn.received[head_end + 4 : head_end + 4 + length].decode("utf-8"))
    except ValueError:  # not UTF-8, or more than flat_json reads: the full client's jsonlite
        return None
    if (
        not isinstance(answer, dict)
        or not isinstance(answer.get("access_token"), str)
        or answer.get("stale") is True  # the full client warns on stderr
    ):
        return None
    return answer


def _token(path: str, fields: dict[str, str], limit: float, me: int) -> "Any":
    """The daemon's 200 answer, or a Handoff of what was done (a connection or none)."""
    import _socket

    body = _body(fields)
    if body is None:
        return Handoff()
    deadline = time.monotonic() + limit
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(limit)
        sock.connect(path)
    except OSError:  # no daemon, a full backlog...: the full client's retries
        sock.close()
        return Handoff()
    conn = Connection(path, fields, sock, deadline)
    if peer_uid(sock) != me:
        return Handoff(connection=conn)  # nothing sent: the full client refuses it
    try:
        answer = _exchange(conn, body)
    except OSError:  # a timeout, a reset: the full client reads on and reports
        answer = None
    if answer is None:
        return Handoff(connection=conn)
    sock.close()
    return answer


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _run(argv: list[str]) -> "Any":
    """The hot command's exit status, or a Handoff for the full client."""
    command = argv[0] if argv else ""
    if command not in ("get", "kubectl-credential", "git-credential"):
        return Handoff()
    parsed = _parse(command, argv[1:])
    if parsed is None:
        return Handoff()
    opts, positionals = parsed
    # --timeout, else $AGENTID_HELPER_TIMEOUT when set and not empty (daemon_api)
    limit = _timeout(opts.pop("timeout") if "timeout" in opts else getenv(TIMEOUT_ENV) or None)
    me = posix.geteuid()
    path = plain_socket_path(me)
    if limit is None or path is None:
        return Handoff()
    if command == "git-credential":
        return _git_get(opts, positionals, path, limit, me)
    fmt = opts.pop("format", "token")
    fields = _fields(opts)
    if positionals or fields is None or fmt not in FORMATS:
        return Handoff()
    if command == "kubectl-credential":
        from . import failures, formats

        try:
            api_version = formats.exec_api_version(getenv("KUBERNETES_EXEC_INFO"))
        except failures.ClientError:
            return Handoff()
        answer = _token(path, fields, limit, me)
        if isinstance(answer, Handoff):
            return answer
        _write(formats.exec_credential(answer, api_version))
        return 0
    answer = _token(path, fields, limit, me)
    if isinstance(answer, Handoff):
        return answer
    if fmt in ("token", "header"):
        _write(render_plain(answer["access_token"], fmt))
    else:
        from . import formats

        _write(formats.format_token(answer, fmt))
    return 0


def _git_get(
    opts: "dict[str, Any]", positionals: list[str], path: str, limit: float, me: int
) -> "Any":
    if positionals != ["get"]:
        return Handoff()
    from . import failures, gitcred

    stdin = _Recording()
    try:
        attrs = gitcred.parse_request(stdin)  # type: ignore[arg-type]  # an iterable of lines
        explicit = opts.get("profile")
        profile = gitcred.selected_profile(attrs, explicit or None)
    except failures.ClientError:
        return Handoff("".join(stdin.lines))
    if profile is None or not gitcred.protocol_allowed(attrs):
        return 0  # not ours: let the next helper answer
    answer = _token(path, {"profile": profile}, limit, me)
    if isinstance(answer, Handoff):
        answer.stdin_text = "".join(stdin.lines)
        return answer
    sys.stdout.write(gitcred.answer_get(attrs, profile, answer))
    sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    """Run a hot command; anything this module does not handle runs the full client.

    When this module answered, the process ends here with ``posix._exit`` once
    stdout is flushed: nothing registered an atexit handler or left a buffer,
    and the interpreter's teardown of its modules is time the caller waits for.
    """
    try:
        outcome = _run(argv)
        if not isinstance(outcome, Handoff):
            sys.stdout.flush()
            posix._exit(int(outcome))
    except BrokenPipeError:
        posix._exit(quiet_broken_pipe())
    except KeyboardInterrupt:
        return 130
    from .hotbundle import install

    install()
    from .cli import main as full_main

    return full_main(argv, handoff=outcome)
