"""The daemon's HTTP API as the CLI uses it: connect, autostart, map errors."""

from __future__ import annotations

import os

from . import paths
from .failures import DaemonUnreachable, from_response
from .transport import DEFAULT_TIMEOUT_S, ConnectFailed, Response, request

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any

START_HINTS = [
    "start it with `agentid-helper daemon` or `systemctl --user start agentid-helper.socket`"
]


def autostart_enabled() -> bool:
    return os.environ.get(paths.NO_AUTOSTART_ENV, "") != "1"


def call(
    method: str,
    target: str,
    payload: Any = None,
    *,
    autostart: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    socket_path: str | None = None,
) -> Response:
    """Send one request, starting the daemon first when it is absent and allowed.

    Returns any response (errors included); raises DaemonUnreachable when no
    daemon can be reached.
    """
    path = socket_path or paths.socket_path()
    try:
        return request(path, method, target, payload, timeout=timeout)
    except ConnectFailed:
        pass
    if not autostart or not autostart_enabled():
        reason = "autostart disabled: AGENTID_HELPER_NO_AUTOSTART=1" if autostart else "not running"
        raise DaemonUnreachable(f"daemon unreachable at {path} ({reason})", START_HINTS) from None
    from .autostart import StartFailed, ensure_daemon  # cold path only

    try:
        ensure_daemon(path)
    except StartFailed as exc:
        hints = [f"see {exc.log_path}"] if exc.log_path else []
        raise DaemonUnreachable(
            f"daemon unreachable at {path}: {exc}", hints + START_HINTS
        ) from None
    try:
        return request(path, method, target, payload, timeout=timeout)
    except ConnectFailed:
        raise DaemonUnreachable(
            f"daemon unreachable at {path} after starting it", START_HINTS
        ) from None


def call_ok(method: str, target: str, payload: Any = None, **kwargs: Any) -> Any:
    """Like :func:`call` but raise the mapped ClientError on a non-2xx answer; return JSON."""
    resp = call(method, target, payload, **kwargs)
    if not 200 <= resp.status < 300:
        try:
            body = resp.json()
        except Exception:
            body = None
        raise from_response(resp.status, body)
    return resp.json()


def get_token(fields: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST /v1/token; returns the 200 body (access_token, expires_on, ...)."""
    body = call_ok("POST", "/v1/token", fields, **kwargs)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        from .transport import ProtocolError

        raise ProtocolError("token response without access_token")
    return body


def register_identity_session(fields: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/identity-sessions: a managed identity endpoint session for this process.

    The daemon binds the session to the caller's pid (SO_PEERCRED), so the
    process that calls this must be the one that lives on (exec, not fork).
    """
    body = call_ok("POST", "/v1/identity-sessions", fields)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("identity_endpoint"), str)
        or not isinstance(body.get("identity_header"), str)
    ):
        from .transport import ProtocolError

        raise ProtocolError("identity session response without endpoint and header")
    return body
