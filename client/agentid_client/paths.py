"""Where the daemon's socket and the config file live, without platformdirs.

The daemon finds its runtime directory with platformdirs'
``user_runtime_dir("agentid-helper")``. Importing platformdirs costs the hot
path several milliseconds, so this module replicates its Unix rules
(platformdirs 4.x, ``unix.py``/``_xdg.py``/``_runtime.py``/``_paths.py``):

1. ``$XDG_RUNTIME_DIR`` when it is absolute and acceptable: a real directory
   (not a symlink) owned by the effective uid with mode exactly 0700 (a
   missing one is accepted: the daemon creates it), below ancestors that are
   directories owned by root or by us and not group/other writable unless
   sticky.
2. else ``/run/user/<euid>`` when it exists and passes the same checks;
3. else ``<tempdir>/runtime-<euid>``.

``tests/test_client_paths.py`` compares the result with platformdirs.
The walk here only *chooses* the directory, as platformdirs would (so it
follows links with ``stat`` as platformdirs does, and is kept apart from
:mod:`.file_trust`); whether the chosen directory is trusted is decided
afterwards by :mod:`.private_dir`, whose walk is :mod:`.file_trust`'s.
"""

from __future__ import annotations

import os
import stat

APP_NAME = "agentid-helper"
SOCKET_NAME = "agentid-helper.sock"
SOCKET_ENV = "AGENTID_HELPER_SOCKET"
CONFIG_ENV = "AGENTID_HELPER_CONFIG"
NO_AUTOSTART_ENV = "AGENTID_HELPER_NO_AUTOSTART"


def _parents_ok(path: str) -> bool:
    """True when no other user can replace ``path`` through one of its ancestors."""
    uid = os.geteuid()
    current = os.path.dirname(os.path.abspath(path))
    parts: list[str] = []
    while True:
        parts.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for entry in reversed(parts):
        try:
            info = os.stat(entry)  # follows links like platformdirs' walk does
        except FileNotFoundError:
            return True  # the rest is missing: created private later (platformdirs' missing_ok)
        except OSError:
            return False
        if info.st_uid not in (0, uid) or not stat.S_ISDIR(info.st_mode):
            return False
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
            return False
    return True


def _private_dir_ok(path: str, *, missing_ok: bool) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return missing_ok and _parents_ok(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and info.st_mode & 0o777 == 0o700
        and _parents_ok(path)
    )


def _temp_fallback() -> str:
    import tempfile  # only when neither XDG_RUNTIME_DIR nor /run/user/<uid> is usable

    temp = tempfile.gettempdir()
    roots = [v for n in ("TMPDIR", "TEMP", "TMP") if (v := os.environ.get(n)) and os.path.isabs(v)]
    roots += ["/tmp", "/var/tmp", "/usr/tmp"]
    if os.path.normpath(temp) not in {os.path.normpath(r) for r in roots}:
        for root in roots:
            try:
                with tempfile.TemporaryFile(dir=root):
                    temp = root
                    break
            except OSError:
                continue
    return os.path.join(temp, f"runtime-{os.geteuid()}")


def runtime_base() -> str:
    """The user's runtime directory (without the app name), as platformdirs picks it."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(xdg) and _private_dir_ok(xdg, missing_ok=True):
        return xdg
    default = f"/run/user/{os.geteuid()}"
    if _private_dir_ok(default, missing_ok=False):
        return default
    return _temp_fallback()


def socket_path() -> str:
    """``$AGENTID_HELPER_SOCKET``, else ``<runtime dir>/agentid-helper/agentid-helper.sock``."""
    override = os.environ.get(SOCKET_ENV)
    if override:
        return os.path.expanduser(override)  # as the daemon's listener does
    return os.path.join(runtime_base(), APP_NAME, SOCKET_NAME)


def config_path() -> str:
    """``$AGENTID_HELPER_CONFIG``, else ``$XDG_CONFIG_HOME/agentid-helper/config.toml``."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return override
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, APP_NAME, "config.toml")
