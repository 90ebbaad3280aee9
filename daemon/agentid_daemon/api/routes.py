"""The daemon's HTTP API: routes -> Broker/Config calls -> :class:`Response`.

Routes (docs/api.md): ``POST/DELETE /v1/token``, ``POST /v1/identity-sessions``,
``GET /v1/status``, ``POST /v1/flush``, ``POST /v1/reload``, ``POST /v1/shutdown``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``; ``/v1/agents`` and
``/v1/agent-users`` (agents.py).
Request bodies are validated strictly by :mod:`api_bodies` (JSON object,
known keys, types); the values themselves (GUIDs, modes, scopes, users) are
validated by ``Config.resolve``. Errors are ``AgentIdError.to_json()`` with its status.

The API reads the live config from :class:`ApiState` on each request, so a
reload (which swaps ``state.config``) takes effect for the next request. The
routes that use the configuration first let the reloader notice a changed
file (a stat at most once a second; at once, and the request tried again,
when the request failed for want of configuration).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from agentid_client.contract import DEFAULT_MIN_VALIDITY_S, TOKEN_OPTIONS

from ..cache.schedule import rate_limited
from ..config.loader import Config
from ..config.values import DaemonSettings
from ..config.watch import FileSignature, ReloadOutcome, signature_json
from ..core.errors import (
    AgentIdError,
    ConfigurationError,
    IdentityProviderError,
    InvalidRequest,
    UnknownProfile,
)
from ..core.logs import get_logger, log_request
from ..core.metrics import RequestCounter
from ..core.models import TokenRequest
from ..server.connections import current_peer_socket, take_received_fd
from ..server.peer_process import open_peer_pidfd
from ..server.protocol import Headers, Response, current_peer
from .agents import AgentRoutes, ProvisionerLike, is_provisioning_path
from .bodies import (
    json_type,
    parse_json_object,
    resolve,
    selection_fields,
    token_request_options,
)

if TYPE_CHECKING:  # broker.py pulls in the cache and metrics: annotations only
    from ..broker.broker import ServedToken

log = get_logger("agentid_daemon.api.routes")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Probes are polled; they are logged only when they fail.
_PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# Routes that answer from the configuration: a changed file is noticed first.
# /v1/token is checked in token_payload (the managed identity endpoint comes that way too).
_CONFIG_ROUTES = frozenset({"/v1/identity-sessions", "/v1/flush", "/v1/status"})
# A request failing with these may only lack a configuration just written.
_CONFIG_ERRORS = (InvalidRequest, UnknownProfile, ConfigurationError)

RouteHandler = Callable[[bytes, dict[str, Any]], Awaitable[Response]]


class BrokerLike(Protocol):
    """What the routes ask of :class:`broker.Broker` (tests pass conforming fakes)."""

    async def get_token(
        self,
        req: TokenRequest,
        *,
        min_validity_s: float = DEFAULT_MIN_VALIDITY_S,
        force_refresh: bool = False,
        claims: str | None = None,
    ) -> ServedToken: ...
    def invalidate(self, req: TokenRequest) -> bool: ...
    def flush(self) -> int: ...
    def flush_profile(self, req: TokenRequest) -> int: ...
    def cached_counts(self) -> dict[str, int]: ...
    def status(self) -> list[dict[str, Any]]: ...
    def obo_sessions(self) -> list[dict[str, Any]]: ...
    def recent_errors(self) -> list[dict[str, Any]]: ...
    def apply_settings(self, settings: DaemonSettings) -> None: ...


class IdentitySessionsLike(Protocol):
    """The managed identity endpoint's sessions (:mod:`.identity_sessions`)."""

    async def register(
        self,
        fields: dict[str, Any],
        pid: int,
        *,
        pidfd: int,
        listener_fd: int,
        header: str | None = None,
    ) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...


class ReloaderLike(Protocol):
    """What the routes ask of the daemon (:class:`app.Daemon`) about its config file."""

    async def check_config(self, *, throttle: bool = True) -> bool: ...
    async def reload(self, *, trigger: str = ...) -> ReloadOutcome: ...


class MetricsLike(RequestCounter, Protocol):
    """What the routes ask of :class:`metrics.Metrics`: an endpoint's counter, and the text."""

    def render(self) -> str: ...


@dataclass
class ApiState:
    """What the routes need; ``config`` is swapped on reload, ``listening`` set by app."""

    broker: BrokerLike
    metrics: MetricsLike | None
    config: Config | None
    config_path: str | None = None
    socket_path: str | None = None
    version: str = "0"
    listening: bool = False
    identity_sessions: IdentitySessionsLike | None = None
    #: False: bind identity sessions by pidfd_open + checks even where the kernel
    #: has SO_PEERPIDFD (peer_process.py; the tests take both paths).
    use_so_peerpidfd: bool = True
    last_reload_error: str | None = None  # set by app's reload
    config_file: FileSignature = None  # the file the config in force was read from
    reloader: ReloaderLike | None = None
    run_mode: str = "foreground"  # runmode.run_mode(): systemd, autostart or foreground
    # /v1/agents and /v1/agent-users (provision/); None: not offered.
    provisioner: ProvisionerLike | None = None
    # Set by app: begins a graceful shutdown (POST /v1/shutdown); None: not offered.
    request_shutdown: Callable[[], None] | None = None
    # The effective [daemon] exit_when_idle_s for this run mode (0: never), set by app.
    exit_when_idle_s: float = 0.0
    started_monotonic: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)


# ---- routing ----------------------------------------------------------------


class Api:
    """``await api.handle_request(method, target, headers, body) -> Response``."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self._routes: dict[str, dict[str, RouteHandler]] = {
            "/v1/token": {"POST": self._post_token, "DELETE": self._delete_token},
            "/v1/identity-sessions": {"POST": self._post_identity_session},
            "/v1/status": {"GET": self._get_status},
            "/v1/flush": {"POST": self._post_flush},
            "/v1/reload": {"POST": self._post_reload},
            "/v1/shutdown": {"POST": self._post_shutdown},
            "/healthz": {"GET": self._healthz},
            "/readyz": {"GET": self._readyz},
            "/metrics": {"GET": self._metrics},
        }

    def routes(self) -> list[tuple[str, str]]:
        """Every (method, path) this API serves (docs/api.md documents each)."""
        return [(m, path) for path, methods in self._routes.items() for m in methods]

    async def handle_request(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> Response:
        start = trio.current_time()
        path = target.split("?", 1)[0] if "?" in target else target
        methods = self._routes.get(path)
        route = path if methods is not None else "other"
        ctx: dict[str, Any] = {}
        try:
            if path in _CONFIG_ROUTES:
                # status reports which file is served: always look at the disk first.
                await self._check_config(throttle=path != "/v1/status")
            if methods is None and is_provisioning_path(path):
                route = path if path.count("/") == 2 else path.rpartition("/")[0] + "/{id}"
                response = await self._provisioning(method, path, target, body, ctx)
            else:
                response = await self._dispatch(method, path, methods, body, ctx)
        except AgentIdError as exc:
            response = _error_response(exc)
            ctx.update(error=exc.error_code)
            if isinstance(exc, IdentityProviderError):
                ctx.update(leg=exc.leg, correlation_id=exc.correlation_id)
        status = response.status
        self._count(route, status)
        if route in _PROBE_ROUTES and status < 400:
            return response
        log_request(
            log,
            "request",
            method=method,
            path=path,
            status=status,
            duration_s=trio.current_time() - start,
            ctx=ctx,
        )
        return response

    def _count(self, route: str, status: int) -> None:
        metrics = self.state.metrics
        if metrics is None:
            return
        try:
            metrics.observe_request(route, status)
        except Exception as exc:  # metrics must never break a response
            log.warning("metrics update failed", error=str(exc))

    async def _dispatch(
        self,
        method: str,
        path: str,
        methods: dict[str, RouteHandler] | None,
        body: bytes,
        ctx: dict[str, Any],
    ) -> Response:
        if methods is None:
            return Response.error(404, "not_found", f"no such endpoint: {path[:200]}")
        handler = methods.get(method)
        if handler is None and method == "HEAD" and "GET" in methods:
            handler = methods["GET"]
        if handler is None:
            allow = ", ".join(sorted(methods))
            return Response.error(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path} (allowed: {allow})",
                headers=[("allow", allow)],
            )
        return await handler(body, ctx)

    async def _provisioning(
        self, method: str, path: str, target: str, body: bytes, ctx: dict[str, Any]
    ) -> Response:
        provisioner = self.state.provisioner
        if provisioner is None:
            return Response.error(404, "not_found", "this daemon does not provision agents")
        await self._check_config()
        routes = AgentRoutes(
            provisioner, self.state.config, self.state.config_path, self.state.reloader
        )
        return await routes.handle(method, path, target, body, ctx)

    async def _check_config(self, *, throttle: bool = True) -> bool:
        """Let the reloader notice a changed config file; True if a new one is in force."""
        reloader = self.state.reloader
        return reloader is not None and await reloader.check_config(throttle=throttle)

    def _config(self) -> Config:
        if self.state.config is None:
            raise ConfigurationError("the daemon has no usable configuration")
        return self.state.config

    async def _post_token(self, body: bytes, ctx: dict[str, Any]) -> Response:
        obj = parse_json_object(body, allow_empty=True)
        return Response.json(200, await self.token_payload(obj, ctx))

    def resolve_selection(self, obj: dict[str, Any]) -> TokenRequest:
        """The TokenRequest a ``POST /v1/token`` body selects (validated the same way)."""
        return resolve(self._config(), selection_fields(obj, extra=TOKEN_OPTIONS))

    async def token_payload(self, obj: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        """The 200 body of ``POST /v1/token`` for a decoded request object.

        The managed identity endpoint serves its tokens through here too, so
        both surfaces validate and honour the same request fields.
        """
        min_validity_s, force_refresh, claims = token_request_options(obj, time.time())
        await self._check_config()
        try:
            req = self.resolve_selection(obj)
        except _CONFIG_ERRORS:
            # The file may have been written within the last second (get; write
            # config.toml; get): look now, and try once more with what it says.
            if not await self._check_config(throttle=False):
                raise
            req = self.resolve_selection(obj)
        ctx.update(profile=req.profile, mode=req.mode.value)
        if claims is not None:
            ctx.update(claims_challenge=True)
        served = await self.state.broker.get_token(
            req, min_validity_s=min_validity_s, force_refresh=force_refresh, claims=claims
        )
        payload = served.answer_for(req)
        ctx.update(source=served.source)
        if served.warning is not None:
            ctx.update(stale=True)  # served below min_validity_s: the log says so
        return payload

    async def _post_identity_session(self, body: bytes, ctx: dict[str, Any]) -> Response:
        """Register a managed identity endpoint session for the calling process.

        The request carries the endpoint's listening TCP socket (SCM_RIGHTS),
        which the caller keeps open for the session's life, and, when it
        registers again with a restarted daemon, its ``identity_header``. The
        session is bound to the peer process through a pidfd taken without a
        pid race (:mod:`.peer_process`).
        """
        sessions = self.state.identity_sessions
        if sessions is None:
            return Response.error(
                404, "not_found", "this daemon does not serve a managed identity endpoint"
            )
        listener_fd = take_received_fd()
        try:
            fields, header, pid, pidfd = self._session_request(body, ctx, listener_fd)
        except BaseException:
            if listener_fd is not None:
                os.close(listener_fd)
            raise
        assert listener_fd is not None  # _session_request refuses a request without one
        # register() owns both descriptors from here, on success and on failure.
        answer = await sessions.register(
            fields, pid, pidfd=pidfd, listener_fd=listener_fd, header=header
        )
        return Response.json(201, answer)

    def _session_request(
        self, body: bytes, ctx: dict[str, Any], listener_fd: int | None
    ) -> tuple[dict[str, Any], str | None, int, int]:
        """The selection, the header to resume (if any), the peer's pid and pidfd."""
        obj = parse_json_object(body, allow_empty=True)
        header = obj.pop("identity_header", None)
        if header is not None and not isinstance(header, str):
            raise InvalidRequest(
                f"field 'identity_header' must be a string, not {json_type(header)}"
            )
        fields = selection_fields(obj)
        # Validate now: a bad selection fails the exec, not the command's first call.
        req = resolve(self._config(), fields)
        ctx.update(profile=req.profile, mode=req.mode.value, resumed=header is not None)
        peer, peer_sock = current_peer(), current_peer_socket()
        if peer is None or peer.pid <= 0 or peer_sock is None:
            raise InvalidRequest(
                "cannot identify the calling process (no peer pid on this connection; a "
                "client in another pid namespace cannot own a session: use the sidecar's "
                "fixed session, [daemon] managed_identity_listen)"
            )
        ctx.update(pid=peer.pid)
        if listener_fd is None:
            raise InvalidRequest(
                "send the endpoint's listening socket with the request (SCM_RIGHTS): "
                "the caller owns the port for the session's life"
            )
        with socket.fromfd(peer_sock.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            pidfd = open_peer_pidfd(conn, peer.pid, use_so_peerpidfd=self.state.use_so_peerpidfd)
        return fields, header, peer.pid, pidfd

    async def _delete_token(self, body: bytes, ctx: dict[str, Any]) -> Response:
        obj = parse_json_object(body, allow_empty=True)
        await self._check_config()
        req = resolve(self._config(), selection_fields(obj), need_user_token=False)
        ctx.update(profile=req.profile, mode=req.mode.value)
        dropped = self.state.broker.invalidate(req)
        ctx.update(dropped=dropped)
        return Response.empty(204)

    async def _post_flush(self, body: bytes, ctx: dict[str, Any]) -> Response:
        """Drop tokens; answer what went (``dropped``: keys by kind, and OBO sessions).

        ``{"all": true}`` or an empty body: everything. ``{"profile": P}`` alone,
        or ``{"all": false}`` alone (the default profile): every token of the
        profile (Broker.flush_profile). Other selection fields: the selected
        key, as ``DELETE /v1/token`` does.
        """
        obj = parse_json_object(body, allow_empty=True)
        flush_all = obj.pop("all", None)
        if flush_all is not None and not isinstance(flush_all, bool):
            raise InvalidRequest(f"field 'all' must be a boolean, not {json_type(flush_all)}")
        fields = selection_fields(obj)
        if fields and flush_all:
            raise InvalidRequest('give either selection fields or "all": true, not both')
        broker = self.state.broker
        before, sessions_before = broker.cached_counts(), len(broker.obo_sessions())
        what: dict[str, Any] = {"all": False, "profile": None}
        if fields or flush_all is False:
            req = resolve(self._config(), fields, need_user_token=False)
            what["profile"] = req.profile
            if set(fields) <= {"profile"}:
                broker.flush_profile(req)
                what["whole_profile"] = True
            else:
                broker.invalidate(req)
                what["whole_profile"] = False
        else:
            broker.flush()
            what["all"] = True
        after = broker.cached_counts()
        dropped = {k: n - after.get(k, 0) for k, n in before.items() if n > after.get(k, 0)}
        sessions = max(0, sessions_before - len(broker.obo_sessions()))
        ctx.update(dropped=sum(dropped.values()))
        return Response.json(
            200,
            {**what, "dropped": dropped, "tokens": sum(dropped.values()), "obo_sessions": sessions},
        )

    async def _post_shutdown(self, body: bytes, ctx: dict[str, Any]) -> Response:
        """Begin a graceful shutdown (as SIGTERM does), after this answer is sent."""
        parse_json_object(body, allow_empty=True)
        state = self.state
        if state.request_shutdown is None:
            return Response.error(404, "not_found", "this daemon cannot be stopped through its API")
        state.request_shutdown()
        return Response.json(
            202, {"stopping": True, "pid": os.getpid(), "run_mode": state.run_mode}
        )

    async def _post_reload(self, body: bytes, ctx: dict[str, Any]) -> Response:
        """Re-read the config file now: ``{"result": "loaded"|"unchanged"|"error", ...}``.

        A file that does not load is an answer, not a failed request (200, result
        ``error``): the previous configuration stays in force, and ``error`` says why.
        """
        extra = parse_json_object(body, allow_empty=True)
        if extra:
            raise InvalidRequest(f"POST /v1/reload takes no fields (got {sorted(extra)[0][:40]!r})")
        reloader = self.state.reloader
        if reloader is None:
            return Response.error(404, "not_found", "this daemon cannot reload its configuration")
        outcome = await reloader.reload(trigger="POST /v1/reload")
        ctx.update(result=outcome.result)
        return Response.json(200, outcome.to_json())

    async def _get_status(self, body: bytes, ctx: dict[str, Any]) -> Response:
        state = self.state
        config = state.config
        profiles = config.profile_names() if config else []
        daemon = {
            "pid": os.getpid(),
            "version": state.version,
            "uptime_s": round(time.monotonic() - state.started_monotonic, 3),
            "started_at": int(state.started_wall),
            "socket": state.socket_path,
            "run_mode": state.run_mode,
            "config_path": state.config_path,
            "config_loaded": config is not None,
            # The last reload's error (the previous config stays in force); None after
            # a good reload.
            "last_reload_error": state.last_reload_error,
            # The file the configuration in force was read from (None: there was
            # none): doctor compares it with the file on disk.
            "config_file": signature_json(state.config_file),
            "default_profile": config.default_profile if config else None,
            "profiles": profiles,
            "exit_when_idle_s": state.exit_when_idle_s,
        }
        if state.identity_sessions is not None:
            daemon["managed_identity"] = state.identity_sessions.status()
        return Response.json(
            200,
            {
                "daemon": daemon,
                "entries": state.broker.status(),
                "obo_sessions": state.broker.obo_sessions(),
                # Failures that left no row (and background refresh failures), newest first.
                "recent_errors": state.broker.recent_errors(),
            },
        )

    async def _healthz(self, body: bytes, ctx: dict[str, Any]) -> Response:
        return Response.json(200, {"status": "ok"})

    async def _readyz(self, body: bytes, ctx: dict[str, Any]) -> Response:
        checks = {
            "config_loaded": self.state.config is not None,
            "listener_up": self.state.listening,
        }
        ready = all(checks.values())
        return Response.json(
            200 if ready else 503, {"status": "ok" if ready else "not_ready", **checks}
        )

    async def _metrics(self, body: bytes, ctx: dict[str, Any]) -> Response:
        if self.state.metrics is None:
            return Response(200, [("content-type", PROMETHEUS_CONTENT_TYPE)], b"")
        text = self.state.metrics.render()
        return Response(200, [("content-type", PROMETHEUS_CONTENT_TYPE)], text.encode())


def _error_response(exc: AgentIdError) -> Response:
    """The error JSON; with Retry-After (and ``next_attempt_in_s``) when the key backs off.

    ``next_attempt_in_s`` is when the next plain request tries the identity
    provider again (cache.py: 2 s after a failure, or the whole pause the
    identity provider asked for, then ``rate_limited`` is true and
    ``force_refresh`` does not cut it short).
    """
    headers: list[tuple[str, str]] = []
    body = exc.to_json()
    waits = [exc.next_attempt_in_s or 0.0]
    if isinstance(exc, IdentityProviderError) and exc.retry_after_s:
        waits.append(exc.retry_after_s)
    if max(waits) > 0:
        seconds = max(1, math.ceil(max(waits)))
        headers.append(("retry-after", str(seconds)))
        body["next_attempt_in_s"] = seconds
        body["rate_limited"] = rate_limited(exc)
    return Response.json(exc.http_status, body, headers)
