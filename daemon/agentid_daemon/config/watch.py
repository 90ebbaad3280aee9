"""Noticing a changed config file: its stat signature, checked at most once a second.

The daemon serves the configuration it last loaded; :class:`ConfigWatch`
tells when the file on disk is no longer that one. A file is identified by
``(st_dev, st_ino, st_mtime_ns, st_size)``: an editor that writes in place
changes the mtime (and usually the size), one that renames a new file over the
old one changes the inode. An absent file has the signature ``None``, so a
file that appears (the daemon autostarted before the first config was
written) counts as a change, and so does one that goes away.

The check is a ``stat`` on the request path, throttled to one per
:data:`CHECK_INTERVAL_S`; a request that fails for want of configuration (an
unknown profile, missing ids) checks at once (``throttle=False``), so that
``get; write config.toml; get`` works however fast it is typed. What the
daemon does with a change (reload, keep the old configuration when the new
file is invalid) is app.py's; :class:`ReloadOutcome` is what it reports
(``POST /v1/reload``, docs/api.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

# At most one stat per this many seconds on the request path.
CHECK_INTERVAL_S = 1.0

FileSignature = tuple[int, int, int, int] | None


def file_signature(path: str | None) -> FileSignature:
    """``(st_dev, st_ino, st_mtime_ns, st_size)`` of ``path``; None when it is absent.

    Any other failure to stat (a directory component we may not search) is
    also None: the reload that follows reports the real reason.
    """
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def signature_json(signature: FileSignature) -> dict[str, int] | None:
    """The served file as ``GET /v1/status`` reports it (doctor compares it with the disk)."""
    if signature is None:
        return None
    dev, ino, mtime_ns, size = signature
    return {"device": dev, "inode": ino, "mtime_ns": mtime_ns, "size": size}


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did: ``loaded`` (a new configuration is in force),
    ``unchanged`` (the file says what is in force already) or ``error`` (the
    previous configuration stays; ``error`` says why)."""

    result: Literal["loaded", "unchanged", "error"]
    config_path: str | None
    error: str | None = None
    changes: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "config_path": self.config_path,
            "error": self.error,
            **({"profiles": self.changes} if self.changes else {}),
        }


class ConfigWatch:
    """The signature of the file in force and of the last one tried."""

    def __init__(self, path: str | None, served: FileSignature) -> None:
        self.path = path
        self.served = served  # the file the configuration in force was read from
        self._tried = served  # the last signature a reload was attempted for
        self._checked_at = -float("inf")

    def changed(self, *, throttle: bool = True) -> FileSignature | Literal[False]:
        """The file's new signature if it differs from the last one tried, else False.

        With ``throttle`` at most one stat per :data:`CHECK_INTERVAL_S`. A file
        that failed to load is not tried again until it changes once more.
        """
        now = time.monotonic()
        if throttle and now - self._checked_at < CHECK_INTERVAL_S:
            return False
        self._checked_at = now
        signature = file_signature(self.path)
        return signature if signature != self._tried else False

    def tried(self, signature: FileSignature) -> None:
        self._tried = signature

    def loaded(self, signature: FileSignature) -> None:
        self._tried = self.served = signature
