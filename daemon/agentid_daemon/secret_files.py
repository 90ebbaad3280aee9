"""Reading credential files (secret, certificate, federated token) safely.

A credential path comes from the config file and is read in an engine worker
thread on every T1 acquisition. Whatever sits at the path must not be able to
hold that thread (and with it a share of every profile's cold keys):

- the open is non-blocking, so a FIFO or a device cannot block in ``open()``;
- ``fstat`` must say regular file, of at most :data:`MAX_CREDENTIAL_BYTES`;
- the read runs in a helper thread the engine thread waits for at most
  :data:`READ_TIMEOUT_S` (a hung network filesystem): the profile fails at once
  with a :class:`ConfigurationError` (exit 5) naming the path, never the value.
"""

from __future__ import annotations

import os
import stat
import threading

from .errors import ConfigurationError

MAX_CREDENTIAL_BYTES = 64 * 1024
READ_TIMEOUT_S = 10.0

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_credential_file(path: str, what: str, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The bytes of the regular file at ``path``; ConfigurationError for anything else."""
    outcome: list[bytes | BaseException] = []

    def read() -> None:
        try:
            outcome.append(_read_regular(path, what))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    reader = threading.Thread(target=read, name="credential-file-read", daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not outcome:
        raise ConfigurationError(f"{what} {path} did not answer within {timeout_s:g} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _read_regular(path: str, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ConfigurationError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise ConfigurationError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise ConfigurationError(f"{what} {path} is {kind}, not a regular file")
        if info.st_size > MAX_CREDENTIAL_BYTES:
            raise ConfigurationError(
                f"{what} {path} is larger than {MAX_CREDENTIAL_BYTES // 1024} KiB"
            )
        os.set_blocking(fd, True)
        data = b""
        while len(data) <= MAX_CREDENTIAL_BYTES:
            chunk = os.read(fd, MAX_CREDENTIAL_BYTES + 1 - len(data))
            if not chunk:
                return data
            data += chunk
        raise ConfigurationError(f"{what} {path} is larger than {MAX_CREDENTIAL_BYTES // 1024} KiB")
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
