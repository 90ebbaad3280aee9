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
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys
import time

LOCK_NAME = "agentid-helper.lock"
LOG_NAME = "agentid-helperd.log"
START_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 15.0
POLL_S = 0.02
LOG_ROTATE_BYTES = 4 * 1024 * 1024

# -c rather than -m: works whether or not the daemon package ships __main__.
_DAEMON_CODE = "import sys; from agentid_daemon.app import main; sys.exit(main(sys.argv[1:]))"


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
    """Create ``directory`` and any missing parents with mode 0700.

    (os.makedirs applies its mode to the leaf only; a parent such as
    /tmp/runtime-UID must be private too.)
    """
    missing = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StartFailed(f"cannot create {path}: {exc.strerror}") from None


def _lock(directory: str) -> int:
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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


def spawn(log_path: str) -> subprocess.Popen[bytes]:
    """Start the daemon detached from this process (new session, no terminal)."""
    try:
        if os.stat(log_path).st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path + ".1")  # keep one generation for post-mortems
    except OSError:
        pass  # no log yet (or unreadable): open() below reports what matters
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _DAEMON_CODE],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,  # the daemon logs JSON lines to stdout (journald's way)
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
            cwd="/",
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
        proc = spawn(log_path)
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
