"""The engine host's fork: the first thing an autostarted daemon does.

Whatever an autostarted daemon imports before this fork delays both of the
first call's paths, the host's MSAL import and the parent's trio import,
and runs on one core only. So this module imports what the interpreter has
already loaded (``os``, which ``site`` brings), the C ``_socket`` module,
the client's ``contract`` (no imports of its own) and :mod:`.inherited`
(``os`` only), nothing else; each side
then imports what it needs on its own core: the host its limits and the
engine (:func:`.engine_host.run_host`), the parent the proxy
(:class:`.engine_host.EngineProxy`) and what resolves the told request and
judges the client's (:mod:`.first_request`), whose verdict is the first thing
it sends the host. The autostart command
(``client/agentid_client/autostart.py``) calls :func:`start_from_environ`
before ``agentid_daemon.app``.

The host makes itself non-dumpable (:func:`.limits.forbid_core_dumps`)
before it reads any secret, as the parent does in ``app.main``; neither has
read one at the fork.
"""

from __future__ import annotations

import _socket  # the C module: socket.py would bring enum and selectors before the fork
import os

from agentid_client.contract import FIRST_ANSWER_FD_ENV, WARM_REQUEST_ENV

from .inherited import take_fd

TYPE_CHECKING = False  # typing is not imported before the fork
if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from ..config.loader import Config
    from ..config.watch import FileSignature
    from .engine_host import EngineProxy

_started: EngineProxy | None = None
_taken: EngineProxy | None = None
_config: tuple[FileSignature, Config] | None = None


def start_from_environ(environ: MutableMapping[str, str] | None = None) -> EngineProxy | None:
    """Fork the engine host for the request the autostarting client is about to
    send (the variable is removed: nothing the daemon runs inherits it); None when it named none
    or the host cannot be started (the daemon then builds its own engine, and
    meets whatever stopped the host itself: e.g. a refused ``prctl``)."""
    global _started, _config
    env = os.environ if environ is None else environ
    raw_request = env.pop(WARM_REQUEST_ENV, None)
    # The daemon's end of the client's first-answer pair (process/first_answer.py):
    # the parent reads the request on it (first_request.py) and closes its copy
    # here whatever happens, so the client never waits on a copy nobody answers
    # on; the host writes the answer on its own copy.
    answer_fd = take_fd(env, FIRST_ANSWER_FD_ENV)
    try:
        if raw_request is None or _started is not None:
            return None
        try:
            parent_end, host_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        except OSError:
            return None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            parent_end.close()
            host_end.close()
            return None
        if pid == 0:  # the host: never returns
            code = 0
            try:
                parent_end.close()
                from .engine_host import run_host

                run_host(host_end.detach(), parent, env, answer_fd)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        host_end.close()
        import contextlib

        from .engine_host import EngineProxy
        from .first_request import foresee
        from .limits import forbid_core_dumps

        _started = EngineProxy.over(parent_end.detach(), pid)
        with contextlib.suppress(OSError):  # app.main tries again, and says why
            forbid_core_dumps()  # before the client's request (a user token?) is read
        # While the host imports MSAL: read the configuration, resolve the told
        # request and judge the client's (first_request.py), so the host needs none.
        first = foresee(raw_request, answer_fd)
        _started.foresee(first.foresight)
        if first.config is not None:
            _config = (first.signature, first.config)
        return _started
    finally:
        if answer_fd is not None:
            os.close(answer_fd)


def take_config() -> tuple[FileSignature, Config] | None:
    """The configuration read for the first request, with its file's signature,
    once (None without one): the daemon serves with it (first_request.FirstRequest)."""
    global _config
    taken, _config = _config, None
    return taken


def take_proxy() -> EngineProxy | None:
    """The started host's proxy, once (None without one): the daemon's engine."""
    global _started, _taken
    _taken, _started = _started, None
    return _taken


def host_pid() -> int | None:
    """The pid of the host whose proxy the daemon took (its "daemon ready" line
    names it), None without one."""
    return _taken.pid if _taken is not None else None
