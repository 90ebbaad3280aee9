"""The private-directory rule: where the socket, its lock and the daemon's log may live.

One rule, used by the client before it connects, by autostart before it
creates anything, by the daemon's listener before it binds, and by
``doctor`` (stdlib only, so that the client's hot path can import it):

- the directory is a real directory (``lstat``: not a symlink), owned by us,
  with no group or other permission bits (mode 0700 or stricter);
- each ancestor is owned by root or by us, and writable by others only when
  sticky (``/tmp``) or on a read-only mount: whoever can write to an ancestor
  could swap our directory for theirs. A symlinked ancestor is followed only
  when the link is root's or ours, and its target passes the same walk. That
  walk is :func:`.file_trust.directory_problem`, the one rule for what other
  users may change (the config and credential files obey it too).

Missing directories are created with ``mkdir(0o700)``, which fails when the
name exists: a directory someone else created first (e.g. another user's
``/tmp/runtime-<uid>``) is never adopted, only checked. Files inside are
opened with ``O_NOFOLLOW | O_CLOEXEC`` and must be regular files of ours.
"""

from __future__ import annotations

import os
import stat

from .file_trust import describe_uid as describe_uid  # re-exported: its old home
from .file_trust import directory_problem

# O_NONBLOCK: a FIFO at the name must not hang the open (it is refused below).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class PrivateDirError(Exception):
    """A directory (or a file in it) fails the rule; ``str()`` is one line."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def parents_problem(path: str, uid: int | None = None) -> str | None:
    """Why an ancestor of ``path`` lets someone else replace it; None when none does.

    The walk is :func:`.file_trust.directory_problem` (the one rule for what
    other users may change). Ancestors that do not exist yet are fine: we
    create them private.
    """
    problem = directory_problem(os.path.dirname(os.path.abspath(path)), uid)
    return None if problem is None else f"ancestor {problem.path} {problem.reason}"


def dir_problem(path: str, uid: int | None = None) -> str | None:
    """Why ``path`` is not a private directory of ``uid`` (default: ours); None when it is."""
    me = os.geteuid() if uid is None else uid
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return f"a symlink (owned by {describe_uid(info.st_uid)})"
    if not stat.S_ISDIR(info.st_mode):
        return f"not a directory (owned by {describe_uid(info.st_uid)})"
    if info.st_uid != me:
        return f"owned by {describe_uid(info.st_uid)}, not by {describe_uid(me)}"
    if info.st_mode & 0o077:
        return f"mode {stat.S_IMODE(info.st_mode):04o} lets other users in (needs 0700)"
    return parents_problem(path, me)


def check_private_dir(path: str, uid: int | None = None) -> None:
    """Raise :class:`PrivateDirError` unless ``path`` is a private directory of ours."""
    reason = dir_problem(path, uid)
    if reason is not None:
        raise PrivateDirError(path, reason)


def make_private_dir(path: str, uid: int | None = None) -> None:
    """Create ``path`` (and missing parents) 0700, or accept an existing one that passes.

    ``mkdir`` never follows or reuses what is there: if a name exists (made
    by anyone, at any moment), the rule decides.
    """
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for entry in reversed(missing):
        reason = parents_problem(entry, uid)
        if reason is not None:
            raise PrivateDirError(entry, reason)
        try:
            os.mkdir(entry, 0o700)
        except FileExistsError:
            pass  # created meanwhile (by us or not): the check below decides
        except OSError as exc:
            raise PrivateDirError(entry, f"cannot be created ({exc.strerror})") from None
    check_private_dir(path, uid)


def open_private_file(directory: str, name: str, flags: int, mode: int = 0o600) -> int:
    """Open ``directory/name`` without following a symlink; it must be our regular file.

    Call after :func:`check_private_dir` on ``directory``. Returns the fd.
    """
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, flags | _FILE_FLAGS, mode)
    except OSError as exc:
        try:
            found = os.lstat(path)
        except OSError:
            raise PrivateDirError(path, f"cannot be opened ({exc.strerror})") from None
        if stat.S_ISLNK(found.st_mode):
            raise PrivateDirError(path, "a symlink; not followed") from None
        kind = "not a regular file" if not stat.S_ISREG(found.st_mode) else "cannot be opened"
        raise PrivateDirError(path, f"{kind} ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise PrivateDirError(
            path, f"not a regular file of ours (owned by {describe_uid(info.st_uid)})"
        )
    os.set_blocking(fd, True)
    return fd
