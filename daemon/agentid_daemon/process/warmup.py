"""The first call's MSAL clients, built while an autostarted daemon starts.

A client that finds no daemon starts one and waits for its answer (the first
call, issue 22: no slower than doing the call without the daemon). Building
the MSAL clients of the legs is one tenant discovery round trip each
(``/.well-known/openid-configuration``), time spent waiting for the identity
provider. The client names the profile it asks for (``contract.WARM_PROFILE_ENV``,
a profile name only), and :func:`start_from_environ`, which the autostart
command runs first, imports the engine (MSAL, requests) and starts a thread
that loads the configuration, resolves that profile's agent and calls
:meth:`~agentid_daemon.idp.engine.Engine.prepare`, while the main thread
imports the rest of the daemon (trio, structlog, h11, its modules) and binds
its socket. :func:`take_engine` hands that engine to the daemon
(``app._build``), so the first request finds the clients built and a kept-alive
connection to the authority.

No token is requested here, so the identity provider sees the same token
requests as without it. Whatever fails (a config error, an unreadable
secret, an authority that does not answer) only ends the warm-up: the first
request meets it again and reports it as it would have. The thread's
imports are light on purpose (the configuration modules and the keyring):
the heavy ones happen before it starts, on the main thread, so that two
threads never import the same third-party packages at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING

from agentid_client.contract import WARM_PROFILE_ENV

from ..core.models import AgentRef

if TYPE_CHECKING:
    # Imported by start_from_environ, on the main thread: this module is light,
    # so app.py imports it at no cost for a daemon that was not autostarted.
    from ..idp.engine import Engine


class Warmup:
    """One thread preparing ``engine`` for ``profile`` ("" : the default profile)."""

    def __init__(
        self,
        engine: Engine,
        profile: str,
        *,
        resolve: Callable[[str], AgentRef] | None = None,
    ) -> None:
        self.engine = engine
        self.profile = profile
        self._resolve = resolve or _agent_of
        #: "running", "prepared", or "skipped: <exception type>" (never its
        #: message: a server answer quoted in one could carry a secret).
        self.outcome = "running"
        self._thread = threading.Thread(target=self._run, name="agentid-warmup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.engine.prepare(self._resolve(self.profile))
        except Exception as exc:  # the first request reports it properly
            self.outcome = f"skipped: {type(exc).__name__}"
        else:
            self.outcome = "prepared"


def _agent_of(profile: str) -> AgentRef:
    """The agent the profile names, in the configuration the daemon will load."""
    from ..config.loader import load_config

    return load_config().resolve_selection({"profile": profile or None}).agent


_started: Warmup | None = None


def start_from_environ(environ: MutableMapping[str, str] | None = None) -> Warmup | None:
    """Start the warm-up the autostarting client asked for (the variable is
    removed: nothing the daemon runs inherits it); None when it asked for none."""
    global _started
    env = os.environ if environ is None else environ
    profile = env.pop(WARM_PROFILE_ENV, None)
    if profile is None or _started is not None:
        return None
    from ..idp.engine import Engine  # MSAL and requests: the heavy imports, here

    _started = Warmup(Engine(), profile)
    _started.start()
    return _started


_taken: Warmup | None = None


def take_engine() -> Engine | None:
    """The started warm-up's engine, once (None without one): the daemon uses it."""
    global _started, _taken
    _taken, _started = _started, None
    return _taken.engine if _taken is not None else None


def outcome() -> str | None:
    """How the warm-up whose engine the daemon took went so far (its "daemon
    ready" log line says), None when there was none."""
    return _taken.outcome if _taken is not None else None
