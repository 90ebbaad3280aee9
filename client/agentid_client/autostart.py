"""Start the daemon on demand, exactly once even when many clients race.

Only the cold path imports this module. A client that finds no daemon takes
an exclusive ``flock`` on ``agentid-helper.lock`` next to the socket, checks
again (another client may have started one while it waited), and otherwise
spawns ``python -c 'agentid_daemon.app.main()'`` detached (new session,
stdin on /dev/null, its JSON log lines (stdout) and stderr appended to
``agentid-helperd.log`` in the socket directory, which moves to
``agentid-helperd.log.1`` at a start once it passes ``LOG_ROTATE_BYTES``)
and polls until the socket accepts a connection. The lock is held while
polling so that waiting clients never start a second daemon; the daemon
itself also refuses to start when another one answers.

Nothing is created or opened before the directory passes the private
directory rule (:mod:`.private_dir`); the lock and log are opened with
``O_NOFOLLOW``. The daemon gets an allow-listed environment
(:func:`daemon_environment`), never the client's whole one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

from . import paths, private_dir

LOCK_NAME = "agentid-helper.lock"
LOG_NAME = "agentid-helperd.log"
START_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 15.0
POLL_S = 0.02
LOG_ROTATE_BYTES = 4 * 1024 * 1024
#: Marks the daemons this module starts, so status and doctor can say who runs
#: the daemon (agentid_daemon.runmode reads it under the same name).
STARTED_BY_ENV = "AGENTID_HELPER_STARTED_BY"

# -c rather than -m: works whether or not the daemon package ships __main__.
_DAEMON_CODE = "import sys; from agentid_daemon.app import main; sys.exit(main(sys.argv[1:]))"


# What an autostarted daemon inherits from the client that starts it: names
# and name prefixes. Nothing else (tokens such as AGENTID_ACCESS_TOKEN from
# `exec`, credentials of unrelated tools) lives on in the daemon for its whole
# life. Proxies and CA bundles come from the client that started it (or from
# the systemd unit's environment). README "Security model" lists them.
DAEMON_ENV_NAMES = frozenset(
    {
        *("HOME", "USER", "LOGNAME", "PATH", "LANG", "TZ", "TMPDIR", "TEMP", "TMP"),
        *("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND"),  # the keyring
        *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"),
        *("http_proxy", "https_proxy", "no_proxy", "all_proxy"),
        *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
        # the platform's managed identity endpoint (managed_identity credentials, MSAL)
        *("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT"),
        *("IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET"),
    }
)
DAEMON_ENV_PREFIXES = ("LC_", "XDG_", "AZURE_", "AGENTID_HELPER_", "KEYRING_PROPERTY_")


def daemon_environment(environ: Mapping[str, str], socket_path: str) -> dict[str, str]:
    """The allow-listed part of ``environ``, plus the socket the client checked and waits on."""
    env = {
        name: value
        for name, value in environ.items()
        if name in DAEMON_ENV_NAMES or name.startswith(DAEMON_ENV_PREFIXES)
    }
    env[paths.SOCKET_ENV] = socket_path
    env[STARTED_BY_ENV] = "autostart"
    return env


class StartFailed(Exception):
    def __init__(self, message: str, log_path: str | None = None):
        super().__init__(message)
        self.log_path = log_path


def answers(path: str) -> bool:
    """True when something accepts connections on the socket at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _ensure_dir(directory: str) -> None:
    """Create ``directory`` (and missing parents) 0700, or accept it only if it is private."""
    try:
        private_dir.make_private_dir(directory)
    except private_dir.PrivateDirError as exc:
        raise StartFailed(f"refusing {exc}") from None


def _open(directory: str, name: str, flags: int) -> int:
    """Open a file in the (checked) socket directory: no symlink, our regular file."""
    try:
        return private_dir.open_private_file(directory, name, flags)
    except private_dir.PrivateDirError as exc:
        raise StartFailed(f"refusing {exc}") from None


def _lock(directory: str) -> int:
    fd = _open(directory, LOCK_NAME, os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise StartFailed(f"cannot lock {directory}/{LOCK_NAME}: {exc.strerror}") from None
        if time.monotonic() > deadline:
            os.close(fd)
            raise StartFailed("timed out waiting for another client starting the daemon")
        time.sleep(POLL_S)


def spawn(log_path: str, socket_path: str) -> subprocess.Popen[bytes]:
    """Start the daemon detached from this process (new session, no terminal)."""
    directory, name = os.path.split(log_path)
    try:
        if os.lstat(log_path).st_size > LOG_ROTATE_BYTES:
            # keep one generation for post-mortems (rename moves a link, never its target)
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass  # no log yet: the open below reports what matters
    log_fd = _open(directory, name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _DAEMON_CODE],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,  # the daemon logs JSON lines to stdout (journald's way)
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=daemon_environment(os.environ, socket_path),
        )
    except OSError as exc:
        raise StartFailed(f"cannot run {sys.executable}: {exc.strerror}") from None
    finally:
        os.close(log_fd)


def ensure_daemon(path: str, timeout: float = START_TIMEOUT_S) -> None:
    """Make sure a daemon listens on ``path``, starting one if needed."""
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(directory)
    log_path = os.path.join(directory, LOG_NAME)
    fd = _lock(directory)
    try:
        if answers(path):
            return
        proc = spawn(log_path, path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(path):
                return
            code = proc.poll()
            if code is not None:
                raise StartFailed(f"the daemon exited with status {code} while starting", log_path)
            time.sleep(POLL_S)
        raise StartFailed(f"the daemon did not listen within {timeout:g} s", log_path)
    finally:
        os.close(fd)  # releases the flock
