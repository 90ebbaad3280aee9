"""What every request handler of the emulator shares (the token endpoint's server,
its admin API, the IMDS server): the token service, stats, faults, the one
JSON log line per request; and the OpenID discovery document.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from .faults import FaultState
from .graph_routes import GraphService
from .legs import TokenService
from .stats import Stats


class EmulatorState:
    """Everything the request handlers share (thread-safe parts inside)."""

    def __init__(self, service: TokenService, *, log_stream: TextIO | None = None) -> None:
        self.service = service
        self.graph = GraphService(service.directory, service.issuer, service.replication)
        self.stats = Stats()
        self.faults = FaultState()
        self._log_stream = log_stream or sys.stderr
        self._log_lock = threading.Lock()

    def log(self, **fields: Any) -> None:
        line = json.dumps({"ts": round(time.time(), 3), **fields}, separators=(",", ":"))
        with self._log_lock:
            try:
                self._log_stream.write(line + "\n")
                self._log_stream.flush()
            except (OSError, ValueError):
                pass

    def discovery(self, tenant_id: str) -> dict[str, Any]:
        host = self.service.authority_host
        base = f"{host}/{tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.service.issuer.issuer(tenant_id),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{host}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
