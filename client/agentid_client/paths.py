"""Where the daemon's socket and the config file live, without platformdirs.

The runtime directory is platformdirs' ``user_runtime_dir("agentid-helper")``,
found here for client and daemon alike (the daemon's listener asks this
module). Importing platformdirs costs the hot path several milliseconds, so
this module replicates its Unix rules
(platformdirs 4.x, ``unix.py``/``_xdg.py``/``_runtime.py``/``_paths.py``):

1. ``$XDG_RUNTIME_DIR`` when it is absolute and acceptable: a real directory
   (not a symlink) owned by the effective uid with mode 0700 or stricter (a
   missing one is accepted: the daemon creates it), below ancestors that are
   directories owned by root or by us and not group/other writable unless
   sticky.
2. else ``/run/user/<euid>`` when it exists and passes the same checks;
3. else ``<tempdir>/runtime-<euid>``.

``tests/client/test_client_paths.py`` compares the result with platformdirs. The
checks of a candidate are :mod:`.private_dir`'s (one security rule, whose
walk is :mod:`.file_trust`'s), so the directory chosen is one that the
client, autostart and the daemon's listener then accept.
"""

from __future__ import annotations

import os

from . import private_dir
from .hotpath import APP_NAME as APP_NAME
from .hotpath import SOCKET_ENV as SOCKET_ENV
from .hotpath import SOCKET_NAME as SOCKET_NAME

TYPE_CHECKING = False  # typing costs the hot path milliseconds
if TYPE_CHECKING:
    from collections.abc import Mapping

CONFIG_ENV = "AGENTID_HELPER_CONFIG"
NO_AUTOSTART_ENV = "AGENTID_HELPER_NO_AUTOSTART"


def _private_dir_ok(path: str, *, missing_ok: bool) -> bool:
    """``path`` passes the private-directory rule (:mod:`.private_dir`, the one walk
    of what other users may change), or is missing below safe ancestors and
    ``missing_ok`` (the daemon creates it)."""
    problem = private_dir.dir_problem(path)
    if problem == "missing":
        return missing_ok and private_dir.parents_problem(path) is None
    return problem is None


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


def config_home(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CONFIG_HOME``, else ``~/.config`` (also when it is unset or relative,
    as the XDG base directory spec says)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(base):
        return base
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".config")


def config_path() -> str:
    """``$AGENTID_HELPER_CONFIG``, else ``$XDG_CONFIG_HOME/agentid-helper/config.toml``."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return override
    return os.path.join(config_home(), APP_NAME, "config.toml")


def systemd_user_unit_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where ``agentid-helper systemd install`` puts the user units:
    ``$XDG_CONFIG_HOME/systemd/user``. A path rule, here rather than in
    :mod:`.systemd_units`, because the client's cold path asks it on every start
    of a daemon (is systemd the one to start it?) and must not pay for that
    module's imports."""
    return os.path.join(config_home(environ), "systemd", "user")
