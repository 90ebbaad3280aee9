"""The files the daemon trusts: one rule for the config, ``ca_bundle`` and credential files.

Whoever can change one of these files can make the daemon send the
blueprint's credential to an authority of their choosing (config,
``ca_bundle``), authenticate as the blueprint (secret, certificate,
federated token) or call the loopback managed identity endpoint (the
sidecar's header file). So, like OpenSSH's ``StrictModes``, a file is used
only when no other non-root user can change it or what its path names:

- every component of the path, the file itself, each directory above it and
  each symlink on the way, is owned by root or by the daemon's user;
- no directory on the way is writable by group or others, unless it is
  sticky (``/tmp``): there only an entry's owner (or the directory's owner,
  root or us) can rename or remove it, and every entry on our path is owned
  by root or us (an entry another uid planted first is refused by owner);
- the root of a read-only mount that root owns is not writable by anyone
  whatever its mode bits say (kubelet makes a ConfigMap volume's root 0777
  and mounts it read-only); a read-only view of an ordinary directory is not
  an exception (others may write it through their own mount);
- in a user namespace that leaves root unmapped (systemd's
  ``PrivateUsers=yes``), root's files show as the overflow uid ``nobody``,
  as does every other unmapped owner; that uid then counts as root's, and
  ``doctor``, outside the namespace, sees the real owners;
- symlinks are followed, component by component, only when the link itself
  is owned by root or us; its target is then checked by the same rule
  (Kubernetes Secret volumes are ``header -> ..data/header``, ``..data ->
  ..2026_01_01_...``, all root's); the final open is ``O_NOFOLLOW`` on the
  resolved path, non-blocking (a FIFO cannot hang it), and ``fstat`` must
  show the same regular file the walk checked;
- the file is not writable by group or others;
- a *secret* (blueprint secret, certificate with its key, the sidecar's
  header) is not readable by others either, nor by group when it is ours
  (``chmod 600``). Root may provision one group-readable for a group that
  is root's or our own primary group: systemd's ``LoadCredential=``
  (``0400``, or ``0440`` where an ACL mask shows in the group bits) and a
  Kubernetes Secret volume with ``fsGroup`` equal to the pod's
  ``runAsGroup`` (kubelet adds group read: ``0440 root:<fsGroup>``).
  The config, ``ca_bundle`` and a federated token file (a short-lived,
  audience-bound token that Kubernetes may project ``0644``) may be
  readable by anyone.

Each refusal says which path failed, why, and the exact command that fixes
it. Stdlib only: the daemon's loaders and ``doctor`` import it.
"""

from __future__ import annotations

import os
import stat

MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UntrustedFile(Exception):
    """A file (or a component of its path) fails the rule; ``str()`` is one line.

    ``path`` is the component at fault, ``fix`` the command or step that
    mends it, ``missing`` true when the file (or a directory above it) does
    not exist, which callers may accept (an absent config is an empty one).
    """

    def __init__(self, path: str, reason: str, fix: str, *, missing: bool = False) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason
        self.fix = fix
        self.missing = missing


def describe_uid(uid: int) -> str:
    """``uid 1001 (mallory)``: who owns something, for error messages."""
    import pwd  # only on error paths

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _user_name(uid: int) -> str:
    import pwd  # only on error paths

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _not_ours(path: str, owner: int, me: int) -> UntrustedFile:
    trusted = "root" if me == 0 else f"{describe_uid(me)} or root"
    return UntrustedFile(
        path,
        f"is owned by {describe_uid(owner)}, not by {trusted}",
        f"fix: use a file of your own, or (after checking its content) "
        f"sudo chown {_user_name(me)} {path}",
    )


_ROOTS: list[tuple[frozenset[int], frozenset[int]]] = []


def _roots() -> tuple[frozenset[int], frozenset[int]]:
    """Memoised ``_read_roots()``: a module-level list rather than
    ``functools.cache``, so the hot path does not import functools."""
    if not _ROOTS:
        _ROOTS.append(_read_roots())
    return _ROOTS[0]


def _read_roots() -> tuple[frozenset[int], frozenset[int]]:
    """The uids and gids that stand for root here: 0, and in a user namespace
    that leaves root unmapped (systemd's ``PrivateUsers=yes``, which the shipped
    unit sets) the overflow ids, which every unmapped owner shows as.

    Inside such a namespace root's files and another user's look the same
    (``nobody``); only the modes and our own ownership can be checked there.
    ``doctor``, run outside it, sees the real owners.
    """
    try:
        with open("/proc/self/uid_map", encoding="ascii") as fh:
            ranges = [tuple(map(int, line.split())) for line in fh if line.strip()]
    except (OSError, ValueError):
        return frozenset({0}), frozenset({0})
    if any(outside <= 0 < outside + count for _, outside, count in ranges):
        return frozenset({0}), frozenset({0})  # root is mapped: the usual case
    ids = []
    for name in ("overflowuid", "overflowgid"):
        try:
            with open(f"/proc/sys/kernel/{name}", encoding="ascii") as fh:
                ids.append(int(fh.read()))
        except (OSError, ValueError):
            ids.append(65534)
    return frozenset({0, ids[0]}), frozenset({0, ids[1]})


def _trusted_owner(uid: int, me: int) -> bool:
    return uid == me or uid in _roots()[0]


def _read_only_mount_root(path: str, info: os.stat_result) -> bool:
    """Root's mount point on a read-only mount: a Kubernetes ConfigMap volume.

    kubelet makes a ConfigMap volume's root 0777
    and mounts it read-only; nobody in the pod can write it. Only a mount
    point counts: a read-only *view* of a directory (``ProtectSystem=strict``)
    does not stop others writing it through their own mount.
    """
    if not _trusted_owner(info.st_uid, -1) or not os.path.ismount(path):
        return False
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _check_directory(path: str, info: os.stat_result, me: int) -> None:
    if not _trusted_owner(info.st_uid, me):
        raise _not_ours(path, info.st_uid, me)
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not info.st_mode & stat.S_ISVTX and not _read_only_mount_root(path, info):
        raise UntrustedFile(
            path,
            f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o}) without the "
            "sticky bit: they could replace what it holds",
            f"fix: chmod go-w {path}",
        )


def resolve(path: str, uid: int | None = None) -> tuple[str, os.stat_result]:
    """The resolved path of ``path`` and its ``lstat``, every component checked.

    Raises :class:`UntrustedFile` for a component owned by another non-root
    uid or a directory others can write; ``missing`` when a name does not
    exist (the ancestors before it passed).
    """
    me = os.geteuid() if uid is None else uid
    pending = [part for part in os.path.abspath(path).split("/") if part]
    current = "/"
    info = os.lstat(current)
    _check_directory(current, info, me)
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)  # already checked on the way down
            info = os.lstat(current)
            continue
        candidate = os.path.join(current, name)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            raise UntrustedFile(
                candidate, "does not exist", f"fix: create {candidate}", missing=True
            ) from None
        except PermissionError:
            raise UntrustedFile(
                candidate, "cannot be reached: permission denied", "fix: check its permissions"
            ) from None
        except OSError as exc:
            raise UntrustedFile(
                candidate, f"cannot be checked ({exc.strerror})", "fix: check its permissions"
            ) from None
        if not _trusted_owner(info.st_uid, me):
            raise _not_ours(candidate, info.st_uid, me)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise UntrustedFile(
                    path, "has too many levels of symlinks", "fix: name the file directly"
                )
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                raise UntrustedFile(
                    candidate, f"cannot be read as a link ({exc.strerror})", "fix: try again"
                ) from None
            if target.startswith("/"):
                current = "/"
            pending = [part for part in target.split("/") if part] + pending
            continue
        if pending:
            if not stat.S_ISDIR(info.st_mode):
                raise UntrustedFile(candidate, "is not a directory", f"fix: check the path {path}")
            _check_directory(candidate, info, me)
        current = candidate
    return current, info


def directory_problem(path: str, uid: int | None = None) -> UntrustedFile | None:
    """Why another uid could replace what directory ``path`` holds; None when none can.

    A missing part is fine (whoever creates it is us). For the private-directory
    rule (:mod:`.private_dir`), which adds that the directory is ours and 0700.
    """
    me = os.geteuid() if uid is None else uid
    try:
        resolved, info = resolve(path, me)
    except UntrustedFile as exc:
        return None if exc.missing else exc
    if not stat.S_ISDIR(info.st_mode):
        return UntrustedFile(path, "is not a directory", f"fix: check the path {path}")
    try:
        _check_directory(resolved, info, me)
    except UntrustedFile as exc:
        return exc
    return None


def _check_file_mode(path: str, info: os.stat_result, *, secret: bool) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedFile(
            path,
            f"is writable by group or others (mode {mode:04o})",
            f"fix: chmod go-w {path}",
        )
    if not secret:
        return
    root_uids, root_gids = _roots()
    group_read_ok = info.st_uid in root_uids and (
        info.st_gid in root_gids or info.st_gid == os.getegid()
    )
    exposed = mode & stat.S_IROTH or (mode & stat.S_IRGRP and not group_read_ok)
    if exposed:
        raise UntrustedFile(
            path,
            f"is readable by group or others (mode {mode:04o}) and holds a secret",
            f"fix: chmod 600 {path}",
        )


def check_file(path: str, *, secret: bool, uid: int | None = None) -> str:
    """The resolved path of a file that passes the rule; else :class:`UntrustedFile`.

    For ``doctor`` (which reports, reads nothing); loaders use :func:`open_trusted`.
    """
    me = os.geteuid() if uid is None else uid
    resolved, info = resolve(path, me)
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info)
    _check_file_mode(path, info, secret=secret)
    return resolved


def _not_regular(path: str, info: os.stat_result) -> UntrustedFile:
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
    return UntrustedFile(path, f"is {kind}, not a regular file", "fix: point it at a file")


def open_trusted(path: str, *, secret: bool, max_bytes: int) -> tuple[int, int]:
    """``(fd, size)`` of the regular file at ``path`` once it passes the rule.

    The fd is blocking again (the open was not); the caller closes it.
    """
    me = os.geteuid()
    resolved, checked = resolve(path, me)
    if not stat.S_ISREG(checked.st_mode):
        raise _not_regular(path, checked)  # never opened: a FIFO cannot block us
    try:
        fd = os.open(resolved, _OPEN_FLAGS)
    except PermissionError:
        raise UntrustedFile(
            path, "cannot be read: permission denied", f"fix: chmod u+r {path}"
        ) from None
    except OSError as exc:
        raise UntrustedFile(
            path, f"cannot be opened ({exc.strerror})", "fix: check the file"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, info)
        if (info.st_dev, info.st_ino) != (checked.st_dev, checked.st_ino):
            raise UntrustedFile(path, "changed while it was checked", "fix: try again")
        if not _trusted_owner(info.st_uid, me):
            raise _not_ours(path, info.st_uid, me)
        _check_file_mode(path, info, secret=secret)
        if info.st_size > max_bytes:
            raise UntrustedFile(
                path,
                f"is larger than {max_bytes // 1024} KiB",
                "fix: point it at the right file",
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_trusted(path: str, *, secret: bool, max_bytes: int) -> bytes:
    """The content of a file that passes the rule, at most ``max_bytes`` (else refused)."""
    fd, _ = open_trusted(path, secret=secret, max_bytes=max_bytes)
    try:
        data = b""
        while len(data) <= max_bytes:
            try:
                chunk = os.read(fd, max_bytes + 1 - len(data))
            except OSError as exc:
                raise UntrustedFile(
                    path, f"cannot be read ({exc.strerror})", "fix: check the file"
                ) from None
            if not chunk:
                return data
            data += chunk
        raise UntrustedFile(
            path, f"is larger than {max_bytes // 1024} KiB", "fix: point it at the right file"
        )
    finally:
        os.close(fd)
