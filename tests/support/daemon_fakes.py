"""Stand-ins for the daemon's parts, conforming to the seams they replace.

``FakeCache`` is an ``app.CacheService``, ``FakeBroker`` an ``api.BrokerLike``,
``FakeSessions`` an ``api.IdentitySessionsLike``:
the daemon's code takes them as it takes the real ones (no getattr/hasattr
for fakes). ``API_CONFIG`` is a small config for route tests, loaded with the
real loader by :func:`load_api_config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import trio

from agentid_daemon.broker.broker import ServedToken
from agentid_daemon.cache.entry import EventCallback
from agentid_daemon.config.loader import Config, load_config
from agentid_daemon.config.values import DaemonSettings
from agentid_daemon.core.models import TokenRequest

TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
TENANT = "11111111-1111-1111-1111-111111111111"
BLUEPRINT = "22222222-2222-2222-2222-222222222222"
AGENT = "33333333-3333-3333-3333-333333333333"

API_CONFIG = f"""
default_profile = "bot"

[defaults]
tenant_id = "{TENANT}"
blueprint_app_id = "{BLUEPRINT}"
agent_identity_app_id = "{AGENT}"
blueprint_credential = {{ env = "BP_SECRET" }}

[profiles.bot]
mode = "AutonomousApp"

[profiles.user]
mode = "AutonomousUser"
user_upn = "agent@contoso.com"
scope = "User.Read"

[profiles.obo]
mode = "OBO"
"""


def load_api_config(directory: Path, text: str = API_CONFIG) -> Config:
    path = directory / "config.toml"
    path.write_text(text)
    return load_config(path, environ={})


class FakeCache:
    """A token cache of ``entries`` keys (none by default) whose ``run`` only waits."""

    def __init__(self, idle_timeout_s: float = 3600.0, entries: int = 0) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.entries = entries
        self.running = False
        self.listeners: list[EventCallback] = []

    def __len__(self) -> int:
        return self.entries

    def add_listener(self, callback: EventCallback) -> None:
        self.listeners.append(callback)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        task_status.started()
        await trio.sleep_forever()


class FakeBroker:
    """Records calls; answers with a fixed token, or raises ``error``.

    With ``gate`` set, ``get_token`` sets ``entered`` and waits for the gate
    (to hold a request in flight).
    """

    def __init__(self, gate: trio.Event | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.error: Exception | None = None
        self.source: Literal["cache", "identity_provider"] = "identity_provider"
        self.rows: list[dict[str, Any]] = [{"key": "AutonomousApp x", "state": "valid"}]
        self.gate = gate
        self.entered = trio.Event()
        self.claims: str | None = None  # of the last get_token
        self.session_rows: list[dict[str, Any]] = [
            {"name": "job-1", "user": "sha256:0123456789abcdef"}
        ]
        self.cached: dict[str, int] = {"resource": 2, "t1": 1}  # cached_counts()
        self.errors: list[dict[str, Any]] = []  # recent_errors()

    async def get_token(
        self,
        req: TokenRequest,
        *,
        min_validity_s: float = 300,
        force_refresh: bool = False,
        claims: str | None = None,
    ) -> ServedToken:
        self.calls.append(("get", (req, min_validity_s, force_refresh)))
        self.claims = claims
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error:
            raise self.error
        return ServedToken(
            access_token=TOKEN,
            token_type="Bearer",
            expires_on=2,
            refresh_on=1,
            scope=" ".join(req.scopes),
            mode=req.mode.value,
            source=self.source,
        )

    def invalidate(self, req: TokenRequest) -> bool:
        self.calls.append(("invalidate", req))
        return True

    def flush(self) -> int:
        self.calls.append(("flush", None))
        self.cached = {}
        return 3

    def flush_profile(self, req: TokenRequest) -> int:
        self.calls.append(("flush_profile", req))
        self.cached = {}
        return 1

    def cached_counts(self) -> dict[str, int]:
        return dict(self.cached)

    def apply_settings(self, settings: DaemonSettings) -> None:
        self.calls.append(("apply_settings", settings))

    def recent_errors(self) -> list[dict[str, Any]]:
        return self.errors

    def status(self) -> list[dict[str, Any]]:
        return self.rows

    def obo_sessions(self) -> list[dict[str, Any]]:
        return self.session_rows


class FakeSessions:
    """An ``api.IdentitySessionsLike`` that records registrations."""

    def __init__(self) -> None:
        self.registered: list[tuple[dict[str, Any], int]] = []

    async def register(
        self,
        fields: dict[str, Any],
        pid: int,
        *,
        pidfd: int,
        listener_fd: int,
        header: str | None = None,
    ) -> dict[str, Any]:
        # Owns the descriptors, like the real one; records what the route checked.
        os.close(pidfd)
        os.close(listener_fd)
        self.registered.append((fields, pid))
        return {
            "identity_endpoint": "http://127.0.0.1:9/msi/token",
            "identity_header": "h" * 43,
            "pid": pid,
        }

    def status(self) -> dict[str, Any]:
        return {"endpoint": None, "sessions": len(self.registered)}
