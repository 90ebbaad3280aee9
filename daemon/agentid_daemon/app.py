"""``agentid-helperd``: wire config, cache, broker and server; signals; sd_notify.

Lifetimes are visible in :func:`serve`: one nursery holds the token cache's
refresher, the HTTP server, the watchdog and the signal handler. Shutdown
(SIGTERM/SIGINT) is: ``STOPPING=1``, stop accepting, close the socket and
remove its file (only if we bound it: a systemd socket belongs to systemd),
let in-flight requests finish (bounded by ``Limits.shutdown_grace_s``),
cancel the rest, exit 0. ``POST /v1/shutdown`` (``agentid-helper stop``) does
the same, and so does ``[daemon] exit_when_idle_s`` once nothing has been
cached for that long (:meth:`Daemon.busy`; absent: 900 s for an autostarted
daemon, never otherwise). The configuration is reloaded when the file changes
(noticed on the request path, config_watch.py), on SIGHUP and on ``POST
/v1/reload``; a bad new file is logged, reported (``last_reload_error``) and
the old configuration stays in force. Cached tokens survive a reload: the
cache is keyed by resolved identities, not profile names.

Exit codes (docs/design.md): 0 ok, 2 usage, 3 an internal failure, 5 a
configuration error (bad config file, unusable socket directory) or another
daemon already serving the socket (an autostarting client then uses that one).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio

from agentid_client.failures import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

from .api.agents import ProvisionerLike
from .api.routes import Api, ApiState, BrokerLike, MetricsLike
from .cache.entry import EventCallback
from .config.loader import Config, load_config
from .config.values import AUTOSTART_EXIT_WHEN_IDLE_S
from .config.watch import ConfigWatch, FileSignature, ReloadOutcome, file_signature
from .core.errors import ConfigurationError
from .core.logs import configure_logging, get_logger
from .identity_endpoint.service import IdentitySessions
from .identity_endpoint.sessions import SidecarSettings
from .process import engine_fork
from .process.limits import forbid_core_dumps, max_connections_for, raise_nofile_limit
from .process.runmode import AUTOSTART, run_mode, set_process_name
from .process.sdnotify import Notifier, StatusLine
from .process.start_report import StartReport
from .server.listener import AlreadyRunning, ListenerError, OpenedListener, open_listener
from .server.protocol import HttpServer, Limits

if TYPE_CHECKING:
    # Imported where it is configured (Daemon.__init__): it brings PyJWT and
    # cryptography (about 50 ms) that no other part needs before the first answer.
    # MSAL (idp.engine) is imported in build_components, only without an engine host.
    from .broker.seams import Engine as BrokerEngine
    from .core.models import TokenRequest
    from .idp.engine import Engine
    from .sidecar_api.service import SidecarApi

log = get_logger("agentid_daemon.app")

# How many MSAL calls may run in worker threads at once.
ENGINE_THREADS = 8
# How long an autostarted daemon waits, before it serves, to cache the request its
# engine host answered (Daemon._cache_first_answer); then it goes on meanwhile.
FIRST_ANSWER_WAIT_S = 1.0


def exit_when_idle_s(config: Config | None, mode: str) -> float:
    """Seconds with nothing cached before the daemon exits (0: never), for ``mode``."""
    configured = config.daemon.exit_when_idle_s if config is not None else None
    if configured is not None:
        return configured
    return AUTOSTART_EXIT_WHEN_IDLE_S if mode == AUTOSTART else 0.0


def _version() -> str:
    # The package's version string, as `agentid-helper --version` prints it
    # (importlib.metadata would scan every installed distribution at start-up).
    from agentid_client import __version__

    return __version__


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="agentid-helperd",
        description="agentid-helper daemon: caches Entra agent identity tokens "
        "and serves them on a Unix socket.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: "
        "$AGENTID_HELPER_CONFIG or ~/.config/agentid-helper/config.toml)",
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="socket path (default: "
        "$AGENTID_HELPER_SOCKET or $XDG_RUNTIME_DIR/agentid-helper/agentid-helper.sock)",
    )
    parser.add_argument(
        "--log-level",
        # The environment lets a systemd drop-in (Environment=) change it
        # without editing ExecStart=.
        default=os.environ.get("AGENTID_HELPER_LOG_LEVEL", "info").lower(),
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
        help="default: $AGENTID_HELPER_LOG_LEVEL or info",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=None,
        help="default: console on a terminal, else JSON lines",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser.parse_args(argv)


_EARLY_TERM: list[int] = []


def _remember_early_term(signum: int, _frame: object) -> None:
    """SIGTERM handler outside trio's signal receiver: record, never interrupt."""
    _EARLY_TERM.append(signum)


class CacheService(Protocol):
    """What the daemon asks of :class:`cache.TokenCache` (tests pass conforming fakes)."""

    idle_timeout_s: float  # a reload sets it

    def __len__(self) -> int: ...
    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    def add_listener(self, callback: EventCallback) -> None: ...


class FirstAnswerer(Protocol):
    """What the daemon asks of its engine host (:class:`.engine_host.EngineProxy`)."""

    def first_answered(self) -> TokenRequest | None: ...
    def release(self) -> None: ...


@dataclass(frozen=True)
class Components:
    """The parts :class:`Daemon` runs; :func:`build_components` makes the real ones."""

    cache: CacheService
    broker: BrokerLike
    metrics: MetricsLike | None
    provisioner: ProvisionerLike | None = None
    #: An autostarted daemon's engine host, which may have answered the first
    #: request itself (process/first_answer.py).
    engine_host: FirstAnswerer | None = None


def build_components(config: Config) -> Components:
    """Engine, cache, broker and metrics for *config* (imported late: heavy modules)."""
    from .broker.broker import Broker
    from .cache.token_cache import TokenCache
    from .core.metrics import Metrics
    from .provision.service import Provisioner

    metrics = Metrics()
    cache = TokenCache(idle_timeout_s=config.daemon.idle_timeout_s)
    # An autostarted daemon's first calls go to its engine host, which made
    # them ahead; MSAL is imported here only without one (process/engine_host.py).
    engine: BrokerEngine
    proxy = engine_fork.take_proxy()
    if proxy is not None:
        engine, own = proxy, proxy.own
    else:
        from .idp.engine import Engine

        engine = built = Engine()

        def own() -> Engine:
            return built

    broker = Broker(
        engine,
        cache,
        metrics,
        limiter=trio.CapacityLimiter(ENGINE_THREADS),
        obo_session_max_age_s=config.daemon.obo_session_max_age_s,
    )
    return Components(cache, broker, metrics, Provisioner(own, broker), engine_host=proxy)


def _profile_changes(old: Config, new: Config) -> dict[str, list[str]]:
    before, after = old.profiles, new.profiles
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(p for p in set(before) & set(after) if before[p] != after[p]),
    }


def _reload_config(path: str | None) -> Config:
    """``load_config`` for SIGHUP: a missing file is an error here, not an empty config.

    (At start an absent file means "no profiles yet"; on reload it means the
    file was removed or renamed, and dropping every profile would fail every get.)
    """
    config = load_config(path)
    if config.path and not os.path.exists(config.path):
        raise ConfigurationError(f"{config.path}: the file is missing")
    return config


class Daemon:
    """The running daemon; :meth:`run` is the whole lifetime."""

    def __init__(
        self,
        config: Config,
        *,
        socket_path: Path | None = None,
        config_path: str | None = None,
        limits: Limits | None = None,
        notifier: Notifier | None = None,
        components: Components | None = None,
        config_signature: FileSignature | bool = True,
        on_listening: Callable[[], None] | None = None,
        use_so_peerpidfd: bool = True,
    ) -> None:
        """``config_signature``: the file's signature taken before ``config`` was
        read (main() does), or True to take it now."""
        self.config_path = config_path
        # Called once the socket accepts connections (an autostarting client waits for it).
        self.on_listening = on_listening
        self.socket_path = socket_path
        self.notifier = notifier or Notifier()
        parts = components or build_components(config)
        self.cache, self.broker, self.metrics = parts.cache, parts.broker, parts.metrics
        self.engine_host = parts.engine_host
        self.activity = StatusLine(self.cache)
        self.cache.add_listener(self.activity.on_event)
        self.state = ApiState(
            broker=self.broker,
            metrics=self.metrics,
            config=config,
            config_path=config.path or config_path,
            version=_version(),
            use_so_peerpidfd=use_so_peerpidfd,
            provisioner=parts.provisioner,
        )
        path = self.state.config_path
        served = file_signature(path) if config_signature is True else config_signature
        self.watch = ConfigWatch(path, served if served is not False else None)
        self.state.config_file = self.watch.served
        self.state.reloader = self
        self._reload_lock = trio.Lock()
        self.api = Api(self.state)
        self.sessions = IdentitySessions(
            self.api,
            sidecar=_sidecar(config),
            metrics=self.metrics,
            allowed_uids=config.daemon.managed_identity_allowed_uids,
        )
        self.state.identity_sessions = self.sessions
        # Microsoft's Agent ID sidecar API (sidecar_api/), when configured.
        self.sidecar_api: SidecarApi | None = None
        if config.daemon.sidecar_api_listen is not None:
            from .sidecar_api.service import SidecarApi

            self.sidecar_api = SidecarApi(
                self.api,
                lambda: self.state.config,
                config.daemon.sidecar_api_listen,
                metrics=self.metrics,
                allowed_uids=config.daemon.managed_identity_allowed_uids,
            )
        self.server = HttpServer(
            self.api.handle_request, limits=limits, allowed_uid=os.getuid(), accept_fds=True
        )
        self._stopping = False
        self._opened: OpenedListener | None = None
        self._shutdown_wanted: trio.Event | None = None  # made inside trio.run
        self.state.request_shutdown = self.request_shutdown

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[OpenedListener] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        opened = await open_listener(self.socket_path)
        self._opened = opened
        self.state.socket_path = opened.path
        self.state.run_mode = run_mode(systemd_socket=not opened.owned)
        self.state.exit_when_idle_s = exit_when_idle_s(self.state.config, self.state.run_mode)
        self._shutdown_wanted = trio.Event()
        try:
            # Outside the nursery: a bad sidecar header file or a taken port
            # must surface as itself (exit 5), not inside an exception group.
            await self.sessions.prepare(opened.identity_endpoint)
            if self.sidecar_api is not None:
                await self.sidecar_api.bind()
            async with trio.open_nursery() as nursery:
                with trio.open_signal_receiver(
                    signal.SIGTERM, signal.SIGINT, signal.SIGHUP
                ) as sigs:
                    await nursery.start(self.cache.run)
                    await nursery.start(self.sessions.run)
                    if self.sidecar_api is not None:
                        await nursery.start(self.sidecar_api.run)
                    if self.engine_host is not None:
                        # Before serving and reporting ready: a client that connects
                        # meanwhile waits in the backlog, then finds it cached.
                        await self._cache_first_answer(nursery, self.engine_host)

                    async def serve_then_stop(task_status: trio.TaskStatus[None]) -> None:
                        await self.server.serve(opened.listener, task_status=task_status)
                        # In-flight requests are done (or the grace period is over).
                        nursery.cancel_scope.cancel()

                    await nursery.start(serve_then_stop)
                    self.state.listening = True
                    if self.on_listening is not None:
                        self.on_listening()  # before the log line: a client is waiting
                    log.info(
                        "daemon ready",
                        version=self.state.version,
                        socket=opened.path,
                        systemd_socket=not opened.owned,
                        run_mode=self.state.run_mode,
                        config=self.state.config_path,
                        profiles=sorted(self.state.config.profiles) if self.state.config else [],
                        pid=os.getpid(),
                        max_connections=self.server.limits.max_connections,
                        engine_host=engine_fork.host_pid(),
                    )
                    await self.notifier.ready(self.activity.text())
                    nursery.start_soon(self.notifier.run_watchdog, self.activity.text)
                    nursery.start_soon(self._stop_when_asked)
                    nursery.start_soon(self._exit_when_idle)
                    task_status.started(opened)
                    if _EARLY_TERM:
                        log.info("shutting down", signal="SIGTERM", during="start-up")
                        await self.stop()
                    async for signum in sigs:
                        if signum == signal.SIGHUP:
                            await self.reload()
                        elif self._stopping:
                            # A second TERM/INT: the user does not want to wait for the drain.
                            log.warning("forced shutdown", signal=signal.Signals(signum).name)
                            nursery.cancel_scope.cancel()
                        else:
                            log.info("shutting down", signal=signal.Signals(signum).name)
                            await self.stop()
        finally:
            with trio.CancelScope(shield=True):
                await opened.aclose()
                if self.sidecar_api is not None:
                    await self.sidecar_api.aclose()
                self.notifier.close()
            log.info("daemon stopped")

    async def _cache_first_answer(self, nursery: trio.Nursery, host: FirstAnswerer) -> None:
        """Cache the request the engine host answered on the client's pair, if it did
        (process/first_answer.py): the broker's calls take the legs the host made
        (the same tokens, once), so the client's next call is a cache hit, status
        lists it, and the identity provider sees no leg twice.

        The host tells only once its first legs are done; a slow identity provider
        must not hold the start up: past ``FIRST_ANSWER_WAIT_S`` the caching goes
        on in ``nursery`` while the daemon serves."""
        done = trio.Event()

        async def cache() -> None:
            try:
                # Abandoned at shutdown: a host still in its legs must not hold it up.
                req = await trio.to_thread.run_sync(host.first_answered, abandon_on_cancel=True)
                if req is None:
                    return
                try:
                    await self.broker.get_token(req)
                except Exception as exc:  # the next call for it makes its legs itself
                    from .broker.recent_errors import error_fields

                    log.warning(
                        "caching the engine host's first answer failed", **error_fields(exc)
                    )
                    return
                finally:
                    host.release()
                log.info(
                    "request answered by the engine host",
                    path="/v1/token",
                    profile=req.profile,
                    mode=req.mode.value,
                )
            finally:
                done.set()

        nursery.start_soon(cache)
        with trio.move_on_after(FIRST_ANSWER_WAIT_S):
            await done.wait()

    def request_shutdown(self) -> None:
        """``POST /v1/shutdown``: stop as SIGTERM does, once the answer is on its way."""
        if self._shutdown_wanted is not None:
            self._shutdown_wanted.set()

    async def _stop_when_asked(self) -> None:
        assert self._shutdown_wanted is not None
        await self._shutdown_wanted.wait()
        log.info("shutting down", requested_by="POST /v1/shutdown")
        await self.stop()

    def busy(self) -> bool:
        """Something would be lost by exiting: a cached token (or a running fetch),
        an OBO or exec session, an open client connection. A key that never got a
        token (a failed one-off request) does not count."""
        return bool(
            any(self.broker.cached_counts().values())
            or self.broker.obo_sessions()
            or self.sessions.status().get("sessions")
            or self.server.active_connections
        )

    async def _exit_when_idle(self) -> None:
        """Exit after ``exit_when_idle_s`` (read at each look: a reload applies it) idle."""
        idle_since = trio.current_time()
        while not self._stopping:
            limit = self.state.exit_when_idle_s
            await trio.sleep(max(0.2, min(5.0, limit / 4)) if limit > 0 else 5.0)
            now = trio.current_time()
            if limit <= 0 or self.busy():
                idle_since = now
            elif now - idle_since >= limit:
                log.info("exiting: nothing cached", exit_when_idle_s=limit)
                await self.stop()
                return

    async def stop(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        self.state.listening = False
        await self.notifier.stopping()
        self.server.stop()
        if self.sidecar_api is not None:
            self.sidecar_api.server.stop()
        # Close and remove the socket now, not after draining: a client that
        # arrives meanwhile fails fast (and may start a new daemon) instead of
        # hanging in the backlog of a daemon that will never accept it.
        if self._opened is not None:
            with trio.CancelScope(shield=True):
                await self._opened.aclose()

    async def check_config(self, *, throttle: bool = True) -> bool:
        """Reload if the config file changed (a stat, at most once a second with
        ``throttle``); True when a new configuration came into force."""
        if self.watch.changed(throttle=throttle) is False:
            return False
        outcome = await self.reload(trigger="file changed")
        return outcome.result == "loaded"

    async def reload(self, *, trigger: str = "SIGHUP") -> ReloadOutcome:
        """Re-read the config file; keep the old one if the new one is bad."""
        async with self._reload_lock:
            return await self._reload(trigger)

    async def _reload(self, trigger: str) -> ReloadOutcome:
        path = self.state.config_path
        await self.notifier.reloading()
        try:
            # Taken before reading: a write during the read shows as a change next time.
            signature = file_signature(path)
            self.watch.tried(signature)
            try:
                new = await trio.to_thread.run_sync(_reload_config, path)
            except ConfigurationError as exc:
                log.error(
                    "configuration reload failed; keeping the previous configuration",
                    error=exc.description,
                    trigger=trigger,
                )
                self.state.last_reload_error = exc.description  # status and doctor show it
                return ReloadOutcome("error", path, error=exc.description)
            self.state.last_reload_error = None
            self.watch.loaded(signature)
            self.state.config_file = signature
            old = self.state.config
            if old == new:
                log.info("configuration unchanged", config=path, trigger=trigger)
                return ReloadOutcome("unchanged", path)
            self.state.config = new
            if old is not None:
                # The new Config resolves afresh; the old one's remembered
                # requests (which may hold OBO user tokens) go now.
                old.forget_resolved()
            self.cache.idle_timeout_s = new.daemon.idle_timeout_s
            self.state.exit_when_idle_s = exit_when_idle_s(new, self.state.run_mode)
            self.sessions.admission.allow(new.daemon.managed_identity_allowed_uids)
            if self.sidecar_api is not None:
                self.sidecar_api.admission.allow(new.daemon.managed_identity_allowed_uids)
            if (self.sidecar_api.listen if self.sidecar_api else None) != (
                new.daemon.sidecar_api_listen
            ):
                log.warning("sidecar_api_listen changed; it takes effect at the next daemon start")
            self.broker.apply_settings(new.daemon)
            changes = _profile_changes(old, new) if old is not None else {}
            if _sidecar(new) != self.sessions.sidecar:
                log.warning(
                    "the managed_identity_* settings changed; they take effect at the next "
                    "daemon start"
                )
            log.info("configuration reloaded", config=new.path, trigger=trigger, **changes)
            return ReloadOutcome("loaded", path, changes=changes)
        finally:
            await self.notifier.ready(self.activity.text())


def _sidecar(config: Config) -> SidecarSettings | None:
    settings = config.daemon
    if settings.managed_identity_listen is None or settings.managed_identity_header_file is None:
        return None
    return SidecarSettings(
        listen=settings.managed_identity_listen,
        header_file=settings.managed_identity_header_file,
        profile=settings.managed_identity_profile,
    )


def _config_file(path: str | None) -> str:
    from .config.loader import default_config_path

    return str(Path(path).expanduser() if path is not None else default_config_path())


def main(argv: Sequence[str] | None = None, *, use_so_peerpidfd: bool = True) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns the exit code.

    *use_so_peerpidfd* False binds identity sessions the way kernels before
    6.5 do (peer_process.py), on any kernel.
    """
    # First: the pipe of a client that autostarted us (and waits to hear how it went).
    report = StartReport.from_environ()
    code, error = _start_and_run(argv, report, use_so_peerpidfd=use_so_peerpidfd)
    if error is not None:
        print(error, file=sys.stderr)
        report.failed(code, error)  # no-op once ready() was sent
    elif code != EXIT_OK:
        report.failed(code, "agentid-helperd: stopped while starting")
    return code


def _start_and_run(
    argv: Sequence[str] | None, report: StartReport, *, use_so_peerpidfd: bool = True
) -> tuple[int, str | None]:
    """The exit code and, when the daemon fails, its one-line error (for stderr)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help / --version / usage errors
        return (int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE), None
    configure_logging(args.log_level, args.log_format)
    set_process_name()
    try:
        forbid_core_dumps()  # before the first secret is read
    except OSError as exc:
        return EXIT_CONFIG, f"agentid-helperd: cannot forbid core dumps: {exc.strerror}"
    try:
        # Read already for an autostarted daemon's first request: serve with that.
        preloaded = engine_fork.take_config() if args.config is None else None
        if preloaded is not None:
            signature, config = preloaded
        else:
            # The signature first: a write during the read shows as a change later.
            signature = file_signature(_config_file(args.config))
            config = load_config(args.config)
    except ConfigurationError as exc:
        return EXIT_CONFIG, f"agentid-helperd: configuration error: {exc.description}"
    daemon = Daemon(
        config,
        socket_path=Path(args.socket).expanduser() if args.socket else None,
        config_path=args.config,
        limits=Limits(max_connections=max_connections_for(raise_nofile_limit())),
        config_signature=signature,
        on_listening=report.ready,
        use_so_peerpidfd=use_so_peerpidfd,
    )
    try:
        # A SIGTERM before trio's receiver is installed (a stop during start-up)
        # or after it is gone (during final clean-up) must not kill the process
        # with the default action: remember it and shut down cleanly instead.
        signal.signal(signal.SIGTERM, _remember_early_term)
        trio.run(daemon.run)
    except AlreadyRunning as exc:
        # The socket path is taken: a conflict the user resolves by using that
        # daemon, stopping it, or choosing another AGENTID_HELPER_SOCKET.
        return EXIT_CONFIG, f"agentid-helperd: {exc}"
    except ListenerError as exc:
        return EXIT_CONFIG, f"agentid-helperd: {exc}"
    except ConfigurationError as exc:  # e.g. the sidecar's header file
        return EXIT_CONFIG, f"agentid-helperd: configuration error: {exc.description}"
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        return EXIT_OK, None
    except Exception:
        # A bug or an unexpected failure of a component: logged (redacted, no
        # locals), one clear line on stderr, non-zero exit for systemd to see.
        log.exception("daemon failed")
        # The client's code for "the daemon failed internally": the same
        # closed set of exit codes for every command.
        return EXIT_UNREACHABLE, "agentid-helperd: the daemon failed; see its log for details"
    return EXIT_OK, None
