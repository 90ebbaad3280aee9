"""A threaded HTTPS server on 127.0.0.1, port 0, run in a background thread."""

from __future__ import annotations

import base64
import binascii
import http.server
import threading
from typing import Any

from tls_certs import ServerTls
from token_gate import TokenGate


class GatedHTTPSServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with TLS and a :class:`TokenGate` for its handlers."""

    daemon_threads = True
    # Handlers must not hang a test: a stuck client gets disconnected.
    request_timeout_s = 30.0

    def __init__(
        self,
        handler: type[http.server.BaseHTTPRequestHandler],
        tls: ServerTls,
        gate: TokenGate,
        **extra: Any,
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.gate = gate
        self.extra = extra
        self._ctx = tls.server_context()
        self._thread: threading.Thread | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        sock.settimeout(self.request_timeout_s)
        # The TLS handshake happens in the handler thread (do_handshake_on_connect
        # is deferred), so one slow client cannot block accept().
        return self._ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def shutdown_request(self, request: Any) -> None:
        # Say goodbye properly (close_notify): GnuTLS treats a bare TCP close
        # as a truncation attack and git reports it as an error.
        try:
            request.settimeout(1.0)
            request.unwrap()
        except (OSError, ValueError):
            pass
        super().shutdown_request(request)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> GatedHTTPSServer:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"{type(self).__name__}:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()

    def __enter__(self) -> GatedHTTPSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Keeps access logs off stderr (they would include paths only, but clutter output)."""

    server: GatedHTTPSServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def bearer_or_basic_password(self) -> str | None:
        """The credential from ``Authorization: Bearer X`` or Basic ``user:X``."""
        value = self.headers.get("Authorization", "")
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
        if scheme.lower() == "basic" and rest.strip():
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            _user, sep, password = decoded.partition(":")
            return password if sep and password else None
        return None
