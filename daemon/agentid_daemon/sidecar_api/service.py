"""The sidecar API as a service: its loopback listener, server and admission.

``[daemon] sidecar_api_listen`` (loopback only: config/fields.parse_listen)
is bound at start-up, before the daemon's nursery opens, so a taken port
stops start-up with exit 5. Connections pass
:class:`~agentid_daemon.server.loopback_peers.LoopbackAdmission` (our uid and
``managed_identity_allowed_uids``; other uids are closed unread) and the
:class:`~agentid_daemon.server.protocol.HttpServer` limits below: a request
within 30 s (a downstream call may take that long), 2 s to the first byte,
1 MiB bodies, 64 connections, an allow-listed uid at most 16 of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from ..config.loader import Config
from ..core.logs import get_logger
from ..core.metrics import RequestCounter
from ..server.listener import ListenerError
from ..server.loopback_peers import LoopbackAdmission
from ..server.protocol import HttpServer, Limits
from .endpoint import SidecarEndpoint, TokenSource

log = get_logger("agentid_daemon.sidecar_api.service")

SIDECAR_LIMITS = Limits(
    max_header_bytes=32 * 1024,  # a user token in Authorization, and a long query
    max_body_bytes=1024 * 1024,
    request_timeout_s=30.0,
    idle_timeout_s=30.0,
    max_connections=64,
    first_byte_timeout_s=2.0,
)
MAX_CONNECTIONS_PER_OTHER_UID = 16


class SidecarApi:
    """``await nursery.start(api.run)`` after ``await api.bind()``."""

    def __init__(
        self,
        tokens: TokenSource,
        config: Callable[[], Config | None],
        listen: tuple[str, int],
        *,
        metrics: RequestCounter | None = None,
        allowed_uids: Iterable[int] = (),
        limits: Limits | None = None,
    ) -> None:
        self.listen = listen
        self.endpoint = SidecarEndpoint(tokens, config, metrics)
        self.admission = LoopbackAdmission(allowed_uids, max_per_peer=MAX_CONNECTIONS_PER_OTHER_UID)
        self.server = HttpServer(
            self.endpoint.handle_request, limits=limits or SIDECAR_LIMITS, admission=self.admission
        )
        self._listener: trio.SocketListener | None = None
        self.address: tuple[str, int] | None = None

    @property
    def url(self) -> str | None:
        if self.address is None:
            return None
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def bind(self) -> None:
        host, port = self.listen
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise ListenerError(
                f"cannot listen on {host}:{port} for the sidecar API: {exc.strerror or exc}"
            ) from None
        for extra in listeners[1:]:
            await extra.aclose()
        self._listener = listeners[0]
        name = self._listener.socket.getsockname()
        self.address = (str(name[0]), int(name[1]))

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self._listener is not None, "bind() first"
        if not self.admission.probed:
            await trio.to_thread.run_sync(self.admission.probe)
        log.info("sidecar API listening", endpoint=self.url)
        await self.server.serve(self._listener, task_status=task_status)

    def status(self) -> dict[str, object]:
        return {"endpoint": self.url, "peers": self.admission.status()}
