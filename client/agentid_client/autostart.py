"""Start the daemon on demand, exactly once even when many clients race.

Only the cold path imports this module. A client that finds no daemon takes
an exclusive ``flock`` on ``agentid-helper.lock`` next to the socket, checks
again (another client may have started one while it waited), and otherwise
spawns ``python -c 'agentid_daemon.app.main()'`` detached (``posix_spawn``:
new session, working directory ``/``, no descriptor of the client's but the
start report pipe (and, for a token request, the first answer's pair and the
start lock), stdin on /dev/null, its JSON log lines (stdout) and stderr
appended to ``agentid-helperd.log`` in the socket directory, which moves to
``agentid-helperd.log.1`` at a start once it passes ``LOG_ROTATE_BYTES``)
and waits, blocked in ``poll()`` on a pipe (no polling of the socket), for
the daemon's one-line start report (``contract.READY_FD_ENV``; the daemon's
``start_report.py``): ``ready`` once its socket accepts connections, or its
exit status and first error line when it cannot start, which the client
reports as its own error with that exit status (a configuration error is
exit 5 with the daemon's did-you-mean, not "daemon unreachable"). The lock
is held while waiting so that waiting clients never start a second daemon;
the daemon itself also refuses to start when another one answers.

A token request is also written, before the spawn, on a socket pair whose
other end the daemon gets (``contract.FIRST_ANSWER_FD_ENV``): its engine host
answers it there as soon as its first legs are made, before the daemon
listens, or closes it without a word. The client takes whichever comes first,
that answer or the ``ready`` report (then it asks on the socket). Answered
early, it goes on at once: the daemon got the start lock too
(``contract.START_LOCK_FD_ENV``) and holds it until its report, so clients
that come meanwhile still wait for it, and a command that starts no daemon
itself waits for a start under way (:func:`wait_for_a_start`) instead of
saying none runs.

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
    FIRST_ANSWER_FD_ENV,
    FIRST_REQUEST_MAX_BYTES,
    MANAGED_IDENTITY_VARS,
    READY_FD_ENV,
    READY_LINE,
    START_FAILED_PREFIX,
    START_LOCK_FD_ENV,
    WARM_REQUEST_ENV,
)
from .contract import START_TIMEOUT_S as START_TIMEOUT_S  # how long it waits (tests shorten it)

TYPE_CHECKING = False  # the first call waits for this module: no typing import
if TYPE_CHECKING:
    from collections.abc import Mapping

LOCK_NAME = "agentid-helper.lock"
LOG_NAME = "agentid-helperd.log"
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


def _flock_polling(fd: int, operation: int, deadline: float) -> bool:
    """Take the ``flock`` ``operation`` (``LOCK_EX`` or ``LOCK_SH``) on ``fd``,
    trying again every ``POLL_S`` while another process holds it; True when it
    had to wait. TimeoutError past ``deadline``; any other failure as its OSError."""
    waited = False
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return waited
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError
        waited = True
        time.sleep(POLL_S)


def _lock(directory: str) -> int:
    fd = _open(directory, LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        _flock_polling(fd, fcntl.LOCK_EX, time.monotonic() + LOCK_TIMEOUT_S)
    except TimeoutError:
        os.close(fd)
        raise StartFailed("timed out waiting for another client starting the daemon") from None
    except OSError as exc:
        os.close(fd)
        raise StartFailed(f"cannot lock {directory}/{LOCK_NAME}: {exc.strerror}") from None
    return fd


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


def _inherited_fds(keep: tuple[int, ...]) -> list[int]:
    """Descriptors above stderr the daemon would inherit, but ``keep``: ones the
    client itself inherited without close-on-exec (a jobserver, a harness's pipe).
    A daemon holding one would keep, say, git waiting for an EOF that never comes."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                pass  # listdir's own descriptor, closed by now
    return found


def spawn(
    log_path: str,
    socket_path: str,
    ready_fd: int,
    warm_request: str | None = None,
    *,
    first_answer: tuple[int, int] | None = None,
) -> Spawned:
    """Start the daemon detached from this process (new session, no terminal).

    ``ready_fd`` (the write end of a pipe) is its start report channel;
    ``warm_request`` the request that made us start it (``contract.WARM_REQUEST_ENV``),
    whose first legs it makes while it starts; ``first_answer`` the daemon's
    end of the first answer's socket pair and the start lock it then holds
    (``contract.FIRST_ANSWER_FD_ENV``, :func:`ensure_daemon`).

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
    # Only ever what this client sends: never a value it inherited itself.
    for name in (WARM_REQUEST_ENV, FIRST_ANSWER_FD_ENV, START_LOCK_FD_ENV):
        env.pop(name, None)
    if warm_request is not None:
        env[WARM_REQUEST_ENV] = warm_request
    given = [ready_fd]
    if first_answer is not None:
        env[FIRST_ANSWER_FD_ENV], env[START_LOCK_FD_ENV] = map(str, first_answer)
        given += first_answer
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),  # the daemon logs JSON lines to stdout (journald's way)
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
        *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds(keep=tuple(given))),
    ]
    here = os.open(".", os.O_PATH | os.O_DIRECTORY)
    try:
        for fd in given:
            os.set_inheritable(fd, True)  # the only descriptors it is given
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
        for fd in given:
            os.set_inheritable(fd, False)
        os.fchdir(here)
        os.close(here)
        os.close(log_fd)
    return Spawned(pid)


def wait_for_start(
    read_fd: int, pair: _socket.socket | None, deadline: float
) -> tuple[str | None, bytes | None]:
    """The daemon's start report line, or its first answer, whichever comes first.

    Blocks in ``poll()`` on the start report pipe and, when given, the client's
    end of the first answer's pair (its request already written); returns
    ``(None, answer)`` when the daemon answered on the pair (a JSON object, read
    to its EOF), else ``(line, None)`` once the report came (None: the pipe
    closed without one). A pair closed without a complete answer is dropped
    and the report awaited. Raises TimeoutError at ``deadline``.
    """
    import select

    from .transport import MAX_BODY_BYTES

    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if pair is not None:
        poller.register(pair.fileno(), select.POLLIN)
    report = answer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready = dict(poller.poll(max(1, int(remaining * 1000))))
        # The pair first: an answer and a report at once is still an answer.
        if pair is not None and pair.fileno() in ready:
            try:
                chunk = pair.recv(1 << 16)
            except OSError:
                chunk = b""
            answer += chunk
            if not chunk or len(answer) > MAX_BODY_BYTES:
                poller.unregister(pair.fileno())
                pair = None
                if chunk == b"" and _is_json_object(answer):
                    return None, answer
        if read_fd in ready:
            chunk = os.read(read_fd, MAX_REPORT_BYTES)
            report += chunk
            if not chunk or b"\n" in report or len(report) >= MAX_REPORT_BYTES:
                # Every write end is closed (the daemon exited or closed it
                # silently), or the line is here.
                line = report.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
                return line or None, None


def _is_json_object(data: bytes) -> bool:
    """A complete answer (the daemon closes the pair after it; a cut one does not parse)."""
    from . import jsonlite

    try:
        return isinstance(jsonlite.loads(data), dict)
    except ValueError:
        return False


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
    path: str,
    timeout: float = START_TIMEOUT_S,
    *,
    warm_request: str | None = None,
    first_request: bytes | None = None,
) -> bytes | None:
    """Make sure a daemon listens on ``path``, starting one if needed (``warm_request``:
    the token request to come, see :func:`spawn`).

    With ``first_request`` (that request's body) a daemon started here may
    answer it before it listens (``contract.FIRST_ANSWER_FD_ENV``): then the
    answer's body (of a 200) is returned, and this client may go on at once,
    the start lock passing to the daemon. None: send the request on the socket.
    """
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(directory)
    log_path = os.path.join(directory, LOG_NAME)
    fd = _lock(directory)
    try:
        if answers(path):
            return None
        pair = daemon_end = None
        if first_request is not None and len(first_request) <= FIRST_REQUEST_MAX_BYTES:
            pair, daemon_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        read_fd, write_fd = os.pipe()  # both ends close-on-exec; spawn hands one over
        try:
            try:
                given = None if daemon_end is None else (daemon_end.fileno(), fd)
                proc = spawn(log_path, path, write_fd, warm_request, first_answer=given)
            finally:
                os.close(write_fd)  # the daemon holds the only write end now
                if daemon_end is not None:
                    daemon_end.close()
            if pair is not None and first_request is not None:
                pair = _send_first_request(pair, first_request)
            try:
                line, answer = wait_for_start(read_fd, pair, time.monotonic() + timeout)
            except TimeoutError:
                raise StartFailed(
                    f"the daemon did not listen within {timeout:g} s", log_path
                ) from None
        finally:
            os.close(read_fd)
            if pair is not None:
                pair.close()
        if answer is not None:
            return answer
        if line != READY_LINE:
            raise _start_failure(line, proc, log_path)
        return None
    finally:
        os.close(fd)  # releases the flock, unless the daemon holds it too (first answer)


def _send_first_request(pair: _socket.socket, body: bytes) -> _socket.socket | None:
    """Write ``body`` on the pair and shut our writing side (the daemon reads to EOF);
    None when the daemon's end is gone already (it exited)."""
    try:
        pair.sendall(body)  # fits the pair's buffer (FIRST_REQUEST_MAX_BYTES): never blocks
        pair.shutdown(_socket.SHUT_WR)
    except OSError:
        pair.close()
        return None
    return pair


def wait_for_a_start(path: str, deadline: float) -> bool:
    """Wait while a client holds the start lock of ``path``'s directory (a daemon is
    being started, or one answered its starter early and is not listening yet:
    ``contract.START_LOCK_FD_ENV``); True when one was, and it is let go now.

    For a command that starts no daemon itself (``flush``, ``status``, ``stop``):
    a daemon about to listen is not "no daemon". Nothing is created: without a
    private directory and its lock file no start is under way.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        private_dir.check_private_dir(directory)
        fd = private_dir.open_private_file(directory, LOCK_NAME, os.O_RDWR)
    except private_dir.PrivateDirError:
        return False
    try:
        return _flock_polling(fd, fcntl.LOCK_SH, deadline)  # shared: beside other waiters
    except OSError:  # TimeoutError included: the call's deadline is over
        return False
    finally:
        os.close(fd)
