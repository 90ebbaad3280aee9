"""Start the daemon on demand, exactly once even when many clients race.

Only the cold path imports this module. A client that finds no daemon takes
an exclusive ``flock`` on ``agentid-helper.lock`` next to the socket, checks
again (another client may have started one while it waited), and otherwise
spawns ``python -c 'agentid_daemon.app.main()'`` detached (``posix_spawn``:
new session, working directory ``/``, no descriptor of the client's but the
start report pipe, stdin on /dev/null, its JSON log lines (stdout) and stderr appended to
``agentid-helperd.log`` in the socket directory, which moves to
``agentid-helperd.log.1`` at a start once it passes ``LOG_ROTATE_BYTES``)
and waits, blocked in ``poll()`` on a pipe (no polling of the socket), for
the daemon's one-line start report (``contract.READY_FD_ENV``; the daemon's
``start_report.py``): ``ready`` once its socket accepts connections, or its
exit status and first error line when it cannot start, which the client
reports as its own error with that exit status (a configuration error is
exit 5 with the daemon's did-you-mean, not "daemon unreachable"). The lock
is held while waiting so that waiting clients never start a second daemon;
the daemon itself also refuses to start when another one answers.

Nothing is created or opened before the directory passes the private
directory rule (:mod:`.private_dir`); the lock and log are opened with
``O_NOFOLLOW``. The daemon gets an allow-listed environment
(:func:`daemon_environment`), never the client's whole one.
"""

from __future__ import annotations

import _socket  # the C module: socket.py pulls in enum and selectors (~4 ms)
import errno
import fcntl
import os
import sys
import time

from . import paths, private_dir
from .contract import (
    MANAGED_IDENTITY_VARS,
    READY_FD_ENV,
    READY_LINE,
    START_FAILED_PREFIX,
    WARM_REQUEST_ENV,
)

TYPE_CHECKING = False  # the first call waits for this module: no typing import
if TYPE_CHECKING:
    from collections.abc import Mapping

LOCK_NAME = "agentid-helper.lock"
LOG_NAME = "agentid-helperd.log"
START_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 15.0
POLL_S = 0.02  # between attempts at the lock another client holds
#: The longest start report read from the daemon (one line).
MAX_REPORT_BYTES = 4096
LOG_ROTATE_BYTES = 4 * 1024 * 1024
#: Marks the daemons this module starts, so status and doctor can say who runs
#: the daemon (agentid_daemon.process.runmode reads it under the same name).
STARTED_BY_ENV = "AGENTID_HELPER_STARTED_BY"

# -c rather than -m: works whether or not the daemon package ships __main__.
# The engine host first: before any thread or heavy import, it forks a child
# that imports MSAL and makes the first call's legs while the daemon imports
# the rest (agentid_daemon.process.engine_fork).
_DAEMON_CODE = (
    "import sys; from agentid_daemon.process.engine_fork import start_from_environ; "
    "start_from_environ(); from agentid_daemon.app import main; sys.exit(main(sys.argv[1:]))"
)


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
        *MANAGED_IDENTITY_VARS,
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
    """The daemon did not come up; ``exit_code`` is set when the daemon said why
    (its own exit status: 5 for a configuration error), None otherwise."""

    def __init__(self, message: str, log_path: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.log_path = log_path
        self.exit_code = exit_code


def answers(path: str) -> bool:
    """True when something accepts connections on the socket at ``path``."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
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


class Spawned:
    """The daemon process :func:`spawn` started, as far as the client needs it:
    its pid, whether it ended, and a way to stop it (tests)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Its exit status once it ended (reaped here), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        """Its exit status; TimeoutError when it is still running after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError
            time.sleep(POLL_S)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, 9)  # SIGKILL (the signal module costs an import)


def _inherited_fds(keep: int) -> list[int]:
    """Descriptors above stderr the daemon would inherit, but ``keep``: ones the
    client itself inherited without close-on-exec (a jobserver, a harness's pipe).
    A daemon holding one would keep, say, git waiting for an EOF that never comes."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                pass  # listdir's own descriptor, closed by now
    return found


def spawn(
    log_path: str, socket_path: str, ready_fd: int, warm_request: str | None = None
) -> Spawned:
    """Start the daemon detached from this process (new session, no terminal).

    ``ready_fd`` (the write end of a pipe) is its start report channel;
    ``warm_request`` the request that made us start it (``contract.WARM_REQUEST_ENV``),
    whose first legs it makes while it starts.

    ``os.posix_spawn`` rather than ``subprocess``, whose import alone costs the
    first call ~20 ms. It cannot change the child's directory, so this process
    steps into ``/`` for the spawn and back (the client is single-threaded): a
    long-lived daemon must not pin the directory it was started from.
    """
    directory, name = os.path.split(log_path)
    try:
        if os.lstat(log_path).st_size > LOG_ROTATE_BYTES:
            # keep one generation for post-mortems (rename moves a link, never its target)
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass  # no log yet: the open below reports what matters
    log_fd = _open(directory, name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    env = daemon_environment(os.environ, socket_path)
    env[READY_FD_ENV] = str(ready_fd)
    env.pop(WARM_REQUEST_ENV, None)  # only ever the request this client sends
    if warm_request is not None:
        env[WARM_REQUEST_ENV] = warm_request
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),  # the daemon logs JSON lines to stdout (journald's way)
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
        *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds(keep=ready_fd)),
    ]
    here = os.open(".", os.O_PATH | os.O_DIRECTORY)
    try:
        os.set_inheritable(ready_fd, True)  # the one descriptor it is given
        os.chdir("/")
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", _DAEMON_CODE],
            env,
            file_actions=actions,
            setsid=True,
        )
    except OSError as exc:
        raise StartFailed(f"cannot run {sys.executable}: {exc.strerror}") from None
    finally:
        os.set_inheritable(ready_fd, False)
        os.fchdir(here)
        os.close(here)
        os.close(log_fd)
    return Spawned(pid)


def read_start_report(read_fd: int, deadline: float) -> str | None:
    """The daemon's start report line; None when it closed the pipe without one.

    Blocks in ``poll()`` until the daemon writes or exits (a closed pipe); raises
    TimeoutError at ``deadline``.
    """
    import select

    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    received = b""
    while b"\n" not in received and len(received) < MAX_REPORT_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if not poller.poll(max(1, int(remaining * 1000))):
            continue
        chunk = os.read(read_fd, MAX_REPORT_BYTES)
        if not chunk:
            break  # every write end is closed: the daemon exited (or closed it) silently
        received += chunk
    line = received.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return line or None


def _start_failure(line: str | None, proc: Spawned, log_path: str) -> StartFailed:
    """What to raise when the report is not ``ready``: the daemon's words, or its status."""
    if line is not None and line.startswith(START_FAILED_PREFIX):
        status, _, message = line[len(START_FAILED_PREFIX) :].partition(" ")
        code = int(status) if status.isdigit() else None
        # The daemon's own line ("agentid-helperd: configuration error: ...").
        return StartFailed(message.removeprefix("agentid-helperd: "), log_path, code)
    try:
        code = proc.wait(timeout=1.0)
    except TimeoutError:
        return StartFailed("the daemon closed its start report without a word", log_path)
    return StartFailed(f"the daemon exited with status {code} while starting", log_path)


def ensure_daemon(
    path: str, timeout: float = START_TIMEOUT_S, *, warm_request: str | None = None
) -> None:
    """Make sure a daemon listens on ``path``, starting one if needed (``warm_request``:
    the token request to come, see :func:`spawn`)."""
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(directory)
    log_path = os.path.join(directory, LOG_NAME)
    fd = _lock(directory)
    try:
        if answers(path):
            return
        read_fd, write_fd = os.pipe()  # both ends close-on-exec; pass_fds hands one over
        try:
            try:
                proc = spawn(log_path, path, write_fd, warm_request)
            finally:
                os.close(write_fd)  # the daemon holds the only write end now
            try:
                line = read_start_report(read_fd, time.monotonic() + timeout)
            except TimeoutError:
                raise StartFailed(
                    f"the daemon did not listen within {timeout:g} s", log_path
                ) from None
        finally:
            os.close(read_fd)
        if line != READY_LINE:
            raise _start_failure(line, proc, log_path)
    finally:
        os.close(fd)  # releases the flock
