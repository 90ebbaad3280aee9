"""Selection flags -> the request fields of ``POST``/``DELETE /v1/token``.

The client sends only the fields it was given; the daemon merges them over
the profile. The OBO user token is read from a file or stdin (argv is visible
to every user) and never printed.
"""

from __future__ import annotations

import sys

from .commands import SELECTION_DESTS
from .contract import MAX_USER_TOKEN_CHARS
from .failures import EXIT_USAGE, ClientError, UsageError

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any, TextIO

# A read bound (whitespace around the token is allowed); the token's own
# limit is MAX_USER_TOKEN_CHARS.
MAX_USER_TOKEN_BYTES = 64 * 1024


def read_user_token(source: str, stdin: TextIO | None = None) -> str:
    """Read a user token from ``source`` (a path, or ``-`` for stdin), stripped."""
    try:
        if source == "-":
            data = (stdin or sys.stdin).read(MAX_USER_TOKEN_BYTES + 1)
        else:
            with open(source, encoding="utf-8") as fh:
                data = fh.read(MAX_USER_TOKEN_BYTES + 1)
    except OSError as exc:
        raise ClientError(
            f"cannot read --user-token-file {source}: {exc.strerror}", EXIT_USAGE
        ) from None
    except UnicodeDecodeError:
        raise ClientError(f"--user-token-file {source} is not text", EXIT_USAGE) from None
    if len(data) > MAX_USER_TOKEN_BYTES:
        raise ClientError(f"--user-token-file {source} is larger than 64 KiB", EXIT_USAGE)
    token = data.strip()
    if not token:
        raise ClientError(f"--user-token-file {source} is empty", EXIT_USAGE)
    if len(token) > MAX_USER_TOKEN_CHARS:
        raise ClientError(
            f"--user-token-file {source} holds more than {MAX_USER_TOKEN_CHARS} characters",
            EXIT_USAGE,
        )
    if any(c.isspace() for c in token):
        raise ClientError(f"--user-token-file {source} holds more than one token", EXIT_USAGE)
    return token


def request_fields(
    opts: dict[str, Any], command: str, stdin: TextIO | None = None
) -> dict[str, Any]:
    """Build the selection part of a token request from parsed options."""
    fields: dict[str, Any] = {}
    for dest in SELECTION_DESTS:
        value = opts.get(dest)
        if value is None:
            continue
        if dest == "scope":
            scopes = [s for chunk in value for s in chunk.split()]
            if not scopes:
                raise UsageError(f"{command}: --scope needs at least one scope", command)
            fields["scope"] = " ".join(scopes)
        else:
            if not str(value).strip():
                raise UsageError(f"{command}: --{dest.replace('_', '-')} is empty", command)
            fields[dest] = str(value).strip()
    if opts.get("user_token_file") is not None:
        fields["user_token"] = read_user_token(str(opts["user_token_file"]), stdin)
    return fields
