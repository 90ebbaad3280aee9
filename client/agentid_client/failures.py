"""Client errors, their exit codes (docs/design.md) and how they are printed.

Exit codes: 0 ok; 2 usage or invalid input; 3 daemon unreachable (or it
failed to answer: a crash, a restart outlasting ``--timeout``, an internal
error); 4 the identity provider refused; 5 configuration error. There is no
exit code 1: every failure falls in one of these classes.
Messages are built from identifiers and daemon error fields only: a token
never reaches one.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any


EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_IDP = 4
EXIT_CONFIG = 5

PROG = "agentid-helper"


class ClientError(Exception):
    """An error the CLI reports as one ``agentid-helper: error: ...`` line plus hints."""

    def __init__(self, message: str, exit_code: int, hints: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hints = list(hints or [])

    def report(self, stream: Any = None) -> int:
        out = stream or sys.stderr
        out.write(f"{PROG}: error: {self.message}\n")
        for hint in self.hints:
            out.write(f"  {hint}\n")
        out.flush()
        return self.exit_code


class UsageError(ClientError):
    def __init__(self, message: str, command: str | None = None):
        where = f"{PROG} {command} --help" if command else f"{PROG} --help"
        super().__init__(message, EXIT_USAGE, [f"see `{where}`"])


class DaemonUnreachable(ClientError):
    def __init__(self, message: str, hints: list[str] | None = None):
        super().__init__(message, EXIT_UNREACHABLE, hints)


class DaemonNotRunning(DaemonUnreachable):
    """Nothing listens on the socket (no socket file, or connection refused).

    Unlike its parent (a daemon that does not answer in time, a socket that is
    not trusted), this is a known state: ``flush``, ``reload``, ``stop`` and
    ``logs`` have nothing to do then, and ``status`` says so.
    """


def cannot_run(command: str, exc: OSError) -> ClientError:
    """``exec``'s error when CMD cannot be started, with the shell's codes:
    127 when it is not found, 126 when it is found but cannot run."""
    if isinstance(exc, FileNotFoundError):
        return ClientError(f"exec: {command}: command not found", 127)
    if isinstance(exc, PermissionError):
        return ClientError(f"exec: {command}: permission denied", 126)
    return ClientError(f"exec: {command}: {exc.strerror}", 126)


_STATUS_EXIT = {
    400: EXIT_USAGE,  # invalid_request
    404: EXIT_USAGE,  # unknown_profile
    403: EXIT_UNREACHABLE,  # forbidden: the daemon will not serve this caller
    502: EXIT_IDP,  # identity_provider_error
    503: EXIT_IDP,  # identity_provider_unavailable
}

_ERROR_EXIT = {
    "invalid_request": EXIT_USAGE,
    "unknown_profile": EXIT_USAGE,
    "forbidden": EXIT_UNREACHABLE,
    "identity_provider_error": EXIT_IDP,
    "identity_provider_unavailable": EXIT_IDP,
    "configuration_error": EXIT_CONFIG,
    # The managed identity endpoint's session table: 429 when the calling process
    # holds its share already, 503 when the daemon's table is full.
    "too_many_sessions": EXIT_USAGE,
}


def from_response(status: int, body: Any, headers: dict[str, str] | None = None) -> ClientError:
    """Turn a daemon error response (the error JSON of docs/api.md) into a ClientError."""
    info: dict[str, Any] = body if isinstance(body, dict) else {}
    code = str(info.get("error") or "")
    # Anything else (500 internal_error, an unknown status) is the daemon failing to
    # answer the request: exit 3 like an unreachable daemon.
    exit_code = _ERROR_EXIT.get(code) or _STATUS_EXIT.get(status) or EXIT_UNREACHABLE
    description = str(info.get("error_description") or code or f"daemon answered HTTP {status}")
    hints: list[str] = []
    codes = [str(c) for c in info.get("aadsts_codes") or [] if str(c).isdigit()]
    missing = [f"AADSTS{c}" for c in codes if f"AADSTS{c}" not in description]
    if missing:
        description += " [" + ", ".join(missing) + "]"
    if code and code not in description:
        description += f" ({code})"
    if info.get("correlation_id"):
        hints.append(f"correlation id: {info['correlation_id']}")
    if info.get("hint"):
        hints.append(f"hint: {info['hint']}")
    wait = _next_attempt_s(info, headers or {})
    # Only a transient failure is retried by itself: a configuration error
    # (exit 5) or the identity provider's refusal (exit 4 from a 502, e.g.
    # AADSTS90002 unknown tenant) fails the same way at the next request.
    transient = exit_code == EXIT_IDP and (
        code == "identity_provider_unavailable" or (not code and status == 503)
    )
    if wait is not None and (transient or info.get("rate_limited") is True):
        hints.append(retry_hint(wait, rate_limited=info.get("rate_limited") is True))
    return ClientError(description, exit_code, hints)


def retry_hint(wait: int, *, rate_limited: bool) -> str:
    """What to do after an identity-provider failure: usually nothing but ask again."""
    if rate_limited:
        return (
            f"the identity provider asked for a pause: the next request tries again in "
            f"{wait} s (--force-refresh does not cut it short)"
        )
    return (
        f"the next request retries the identity provider automatically in {wait} s "
        "(or at once with --force-refresh)"
    )


def _next_attempt_s(info: dict[str, Any], headers: dict[str, str]) -> int | None:
    """The daemon's backoff (``next_attempt_in_s``) or its Retry-After header."""
    for raw in (info.get("next_attempt_in_s"), headers.get("retry-after")):
        if isinstance(raw, bool):
            continue
        try:
            value = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if 0 < value < 10**7:
            return value
    return None
