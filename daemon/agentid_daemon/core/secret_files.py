"""Reading the files the daemon trusts (credentials, the sidecar's header, config, CA bundle).

Every such path passes :mod:`agentid_client.file_trust` (owned by us or
root, nothing on its path writable by others, a secret not readable by
them; the module says why, as OpenSSH's ``StrictModes`` does) and is read
the one way this module implements, whatever sits at the path:

- the open is non-blocking, so a FIFO or a device cannot block in ``open()``;
- ``fstat`` must say regular file, of at most a size cap
  (:data:`MAX_CREDENTIAL_BYTES` for credentials and the header);
- the walk and the read run in a helper thread the caller waits for at most
  :data:`READ_TIMEOUT_S` (a hung network filesystem): the caller fails at
  once with a :class:`ConfigurationError` (exit 5) naming the path and the
  fix, never the value.
"""

from __future__ import annotations

import threading

from agentid_client.file_trust import UntrustedFile, read_trusted

from .errors import ConfigurationError

MAX_CREDENTIAL_BYTES = 64 * 1024
# A config file or a CA bundle (certifi's is about 300 KiB) may be longer.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
READ_TIMEOUT_S = 10.0


class FileMissing(ConfigurationError):
    """The file (or a directory above it) does not exist; some callers accept that."""


def read_trusted_file(
    path: str,
    what: str,
    *,
    secret: bool,
    max_bytes: int,
    timeout_s: float = READ_TIMEOUT_S,
) -> bytes:
    """The bytes of the trusted regular file at ``path``; ConfigurationError for anything else.

    ``secret``: the file holds a secret (not readable by group or others).
    """
    outcome: list[bytes | BaseException] = []

    def read() -> None:
        try:
            outcome.append(read_trusted(path, secret=secret, max_bytes=max_bytes))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    reader = threading.Thread(target=read, name="trusted-file-read", daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not outcome:
        raise ConfigurationError(f"{what} {path} did not answer within {timeout_s:g} s")
    result = outcome[0]
    if isinstance(result, UntrustedFile):
        error = FileMissing if result.missing else ConfigurationError
        where = "" if result.path == path else f": {result.path}"
        # The fix is part of the one line (start-up stderr, last_reload_error).
        fix = "" if result.missing else f"; {result.fix}"
        raise error(f"{what} {path}{where} {result.reason}{fix}") from None
    if isinstance(result, BaseException):
        raise result
    return result


def read_credential_file(
    path: str, what: str, *, secret: bool = True, timeout_s: float = READ_TIMEOUT_S
) -> bytes:
    """A credential file's bytes, capped at :data:`MAX_CREDENTIAL_BYTES`.

    ``secret=False`` for a federated token, which may be readable by others:
    Kubernetes projects it ``0644``, and it is short-lived and audience-bound.
    """
    return read_trusted_file(
        path,
        what,
        secret=secret,
        max_bytes=MAX_CREDENTIAL_BYTES,
        timeout_s=timeout_s,
    )
