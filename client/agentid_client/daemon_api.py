"""The daemon's HTTP API as the CLI uses it: connect, retry, autostart, map errors.

One call has one deadline (``--timeout``, ``AGENTID_HELPER_TIMEOUT``, default
60 s). Within it the call survives what a restart looks like from outside:

- a full listen backlog: :func:`transport.connect` waits (the daemon is busy);
- a connection that ends before a complete answer (the daemon restarted, was
  killed or crashed): the request goes again on a fresh connection, which is
  safe because the daemon's cache makes every request idempotent;
- no daemon at all: the client starts one (``autostart``), or, when the
  systemd units are installed, asks systemd to (:mod:`.supervisor`); a daemon
  it starts may answer a token request before it listens (its first answer);
- a daemon another client is starting (its start lock is held): a call that
  starts none itself waits for it rather than say that none runs.

What cannot be answered by the deadline exits 3 with what to check.
"""

from __future__ import annotations

import os
import sys
import time

from . import jsonlite, paths
from .contract import WARM_REQUEST_FIELDS
from .failures import (
    EXIT_CONFIG,
    PROG,
    ClientError,
    DaemonNotRunning,
    DaemonUnreachable,
    UsageError,
    from_response,
)
from .hotpath import MAX_TIMEOUT_S as MAX_TIMEOUT_S
from .hotpath import TIMEOUT_ENV as TIMEOUT_ENV
from .redact import quoted
from .transport import (
    DEFAULT_TIMEOUT_S,
    ConnectFailed,
    ConnectionLost,
    DeadlineExceeded,
    Response,
    jitter,
    request,
    resume,
)

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any

    from .hotpath import Connection

#: Pause before repeating a request whose connection was lost (jittered).
LOST_RETRY_PAUSE_S = 0.1
#: Without autostart, how long a daemon that just went away may take to be back.
RESTART_WAIT_S = 10.0

START_HINTS = [
    "start it with `agentid-helper daemon` or `systemctl --user start agentid-helper.socket`"
]


def autostart_enabled() -> bool:
    return os.environ.get(paths.NO_AUTOSTART_ENV, "") != "1"


def next_start_hint() -> str:
    """What starts a daemon when none runs, for messages that start none themselves."""
    if autostart_enabled():
        return "the next `agentid-helper get` starts one (`agentid-helper doctor` checks the setup)"
    return f"autostart is disabled ({paths.NO_AUTOSTART_ENV}=1): " + START_HINTS[0].replace(
        "start it", "start one", 1
    )


def parse_timeout(raw: str, source: str, command: str | None = None) -> float:
    """Seconds from ``--timeout``/``AGENTID_HELPER_TIMEOUT``; a UsageError when invalid."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_S:  # also rejects NaN
        raise UsageError(
            # 0 is refused, not read as "no wait": even a cached token takes a
            # round trip to the daemon, so a zero deadline could never be met.
            f"{source} must be a number of seconds greater than 0 and at most "
            f"{MAX_TIMEOUT_S:g} (got {quoted(raw)})",
            command,
        )
    return value


def default_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    return parse_timeout(raw, TIMEOUT_ENV) if raw else DEFAULT_TIMEOUT_S


def _deadline_error(
    path: str, limit: float, exc: DeadlineExceeded, lost: bool
) -> DaemonUnreachable:
    from .supervisor import run_mode_hint  # error path only

    if lost:
        message = (
            f"the daemon at {path} did not answer within {limit:g} s "
            "(it closed the connection without an answer: restarting or crashing?)"
        )
    elif exc.connected:
        message = f"the daemon at {path} accepted the call but did not answer within {limit:g} s"
    else:
        message = f"the daemon at {path} did not accept a connection within {limit:g} s (busy)"
    return DaemonUnreachable(message, [*run_mode_hint(), "wait longer with --timeout SECONDS"])


def _bring_up(
    path: str, deadline: float, method: str, target: str, payload: Any
) -> Response | None:
    """No daemon listens on ``path``: start one, or let systemd start it; raise if we cannot.

    The request waiting for it (``method``, ``target``, ``payload``) is told to
    a daemon started here (:func:`warm_request_of`), which may answer a token
    request itself before it listens: that answer is returned, else None (send
    the request on the socket)."""
    remaining = deadline - time.monotonic()
    from .supervisor import SystemdStartFailed, manages, start_socket  # cold path

    if manages(path):
        try:
            start_socket(remaining)
        except SystemdStartFailed as exc:
            raise DaemonUnreachable(f"daemon unreachable at {path}: {exc}", exc.hints) from None
        return None
    from .autostart import START_TIMEOUT_S, StartFailed, ensure_daemon

    warm_request = warm_request_of(method, target, payload)
    try:
        answer = ensure_daemon(
            path,
            timeout=max(0.1, min(START_TIMEOUT_S, remaining)),
            warm_request=warm_request,
            first_request=None if warm_request is None else jsonlite.dumps(payload).encode(),
        )
    except StartFailed as exc:
        from .autostart import answers

        if answers(path):
            # Another daemon came up meanwhile (ours then exits 5, "already
            # serves"): use it rather than report our start's failure.
            return None
        hints = [f"see {exc.log_path}"] if exc.log_path else []
        if exc.exit_code == EXIT_CONFIG:
            # The daemon said why it cannot start (a config typo, a socket it may
            # not use): its words and its exit status, not "unreachable".
            raise ClientError(f"the daemon cannot start: {exc}", EXIT_CONFIG, hints) from None
        raise DaemonUnreachable(
            f"daemon unreachable at {path}: {exc}", hints + START_HINTS
        ) from None
    if answer is None:
        return None
    return Response(200, {"content-type": "application/json"}, answer)


def warm_request_of(method: str, target: str, payload: Any) -> str | None:
    """What a daemon started for this request may do before it asks
    (``contract.WARM_REQUEST_ENV``): the JSON of its ``WARM_REQUEST_FIELDS``;
    None for any other request."""
    if method != "POST" or target != "/v1/token" or not isinstance(payload, dict):
        return None
    told = {k: payload[k] for k in WARM_REQUEST_FIELDS if k in payload}
    if "claims" in told:
        told["claims"] = True  # that one came, not what it says
    return jsonlite.dumps(told)


#: A connection the hot path opened and handed over (at most one, used once).
_ADOPTED: list[Connection] = []


def adopt(conn: Connection) -> None:
    """Let the next :func:`call` for ``conn``'s token request finish ``conn`` instead
    of sending the request again (agentid_client.hotpath gave up after connecting)."""
    _ADOPTED[:] = [conn]


def _adopted(path: str, method: str, target: str, payload: Any) -> Connection | None:
    """The handed-over connection when it carries this very request."""
    if not _ADOPTED:
        return None
    conn = _ADOPTED.pop()
    if (method, target, path, payload) == ("POST", "/v1/token", conn.path, conn.payload):
        return conn
    conn.sock.close()  # another request: never answer it with this one's connection
    return None


def call(
    method: str,
    target: str,
    payload: Any = None,
    *,
    autostart: bool = True,
    timeout: float | None = None,
    socket_path: str | None = None,
    pass_fd: int | None = None,
) -> Response:
    """Send one request, (re)starting the daemon when it is absent and allowed.

    Returns any response (errors included); raises DaemonUnreachable when no
    daemon answers by the deadline.
    """
    path = socket_path or paths.socket_path()
    limit = default_timeout() if timeout is None else timeout
    adopted = _adopted(path, method, target, payload)
    deadline = time.monotonic() + limit if adopted is None else adopted.deadline
    lost_at: float | None = None  # when a connection last ended without an answer
    just_started = False
    waited_for_a_start = False
    while True:
        try:
            if adopted is not None:
                conn, adopted = adopted, None
                return resume(conn, method, target)
            return request(path, method, target, payload, deadline=deadline, pass_fd=pass_fd)
        except DeadlineExceeded as exc:
            raise _deadline_error(path, limit, exc, lost_at is not None) from None
        except ConnectionLost:
            lost_at, just_started = time.monotonic(), False
        except ConnectFailed:
            if not (autostart and autostart_enabled()) and not waited_for_a_start:
                # Another client's daemon may be about to listen (or answered its
                # starter before it listens): not "no daemon".
                from .autostart import wait_for_a_start  # cold path

                waited_for_a_start = True
                if wait_for_a_start(path, deadline):
                    continue
            if not autostart:
                raise DaemonNotRunning(
                    f"daemon unreachable at {path} (not running)", START_HINTS
                ) from None
            if just_started:
                raise DaemonUnreachable(
                    f"daemon unreachable at {path} after starting it", START_HINTS
                ) from None
            if autostart_enabled():
                first = _bring_up(path, deadline, method, target, payload)
                if first is not None:
                    return first  # the new daemon's first answer, before it listened
                just_started = True
                continue
            # Nothing we may start; a daemon that just went away may be restarting.
            if lost_at is None or time.monotonic() - lost_at > RESTART_WAIT_S:
                raise DaemonUnreachable(
                    f"daemon unreachable at {path} "
                    f"(autostart disabled: {paths.NO_AUTOSTART_ENV}=1)",
                    START_HINTS,
                ) from None
        if time.monotonic() >= deadline:
            raise _deadline_error(path, limit, DeadlineExceeded(path, True), lost_at is not None)
        time.sleep(min(jitter(LOST_RETRY_PAUSE_S), max(0.0, deadline - time.monotonic())))


def call_checked(method: str, target: str, payload: Any = None, **kwargs: Any) -> Any:
    """Like :func:`call` but raise the mapped ClientError on a non-2xx answer;
    return the response (a 204 has no JSON to read)."""
    resp = call(method, target, payload, **kwargs)
    if not 200 <= resp.status < 300:
        try:
            body = resp.json()
        except Exception:
            body = None
        raise from_response(resp.status, body, resp.headers)
    return resp


def call_ok(method: str, target: str, payload: Any = None, **kwargs: Any) -> Any:
    """Like :func:`call_checked`, returning the answer's JSON."""
    return call_checked(method, target, payload, **kwargs).json()


def get_token(fields: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST /v1/token; returns the 200 body (access_token, expires_on, ...)."""
    body = call_ok("POST", "/v1/token", fields, **kwargs)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        from .transport import ProtocolError

        raise ProtocolError("token response without access_token")
    if body.get("stale") is True:
        # Served below min_validity_s during an outage: the token works, but
        # whoever reads stderr (a terminal, kubectl, git) should know why it
        # expires soon. The warning is the daemon's, built from identifiers only.
        warning = body.get("warning")
        sys.stderr.write(f"{PROG}: warning: {warning if isinstance(warning, str) else 'stale'}\n")
        sys.stderr.flush()
    return body


def register_identity_session(
    fields: dict[str, Any], listener_fd: int, *, timeout: float | None = None
) -> dict[str, Any]:
    """POST /v1/identity-sessions: a managed identity endpoint session for this process.

    *listener_fd* is the endpoint's listening socket, sent with the request;
    the caller keeps it open for the session's life (exec_session.py). The
    daemon binds the session to the calling process, which must outlive the
    command (exec waits for it).
    """
    body = call_ok("POST", "/v1/identity-sessions", fields, timeout=timeout, pass_fd=listener_fd)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("identity_endpoint"), str)
        or not isinstance(body.get("identity_header"), str)
    ):
        from .transport import ProtocolError

        raise ProtocolError("identity session response without endpoint and header")
    return body
