"""The daemon's managed identity endpoint alone, for the two-uid tests (run as a script).

The real :class:`~agentid_daemon.identity_endpoint.service.IdentitySessions` (its
listener, HttpServer, LoopbackAdmission and sidecar session) in front of the
real :class:`~agentid_daemon.api.routes.Api` with a ``FakeBroker`` (tests/support/daemon_fakes.py),
so a token request is answered without an identity provider. The tests start
it as Alice and connect as Mallory.

    python loopback_endpoint_server.py --dir DIR [--allow-uid UID]...

It writes ``DIR/header`` (0600, the sidecar's header file), then
``DIR/ready`` (JSON: ``endpoint``). On SIGTERM it writes ``DIR/status``
(``IdentitySessions.status()``) and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

import trio
from daemon_fakes import FakeBroker, load_api_config

from agentid_daemon.api.routes import Api, ApiState
from agentid_daemon.core.logs import configure_logging
from agentid_daemon.identity_endpoint.service import IdentitySessions
from agentid_daemon.identity_endpoint.sessions import SidecarSettings


async def serve(directory: Path, allowed_uids: list[int]) -> None:
    config = load_api_config(directory)
    api = Api(ApiState(broker=FakeBroker(), metrics=None, config=config))
    sidecar = SidecarSettings(listen=("127.0.0.1", 0), header_file=str(directory / "header"))
    sessions = IdentitySessions(api, sidecar=sidecar, allowed_uids=allowed_uids)
    await sessions.prepare()
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(sessions.run)
            # Renamed into place: the test waits for the name, then reads it whole.
            (directory / "ready.tmp").write_text(json.dumps({"endpoint": sessions.url}))
            (directory / "ready.tmp").rename(directory / "ready")
            async for _ in signals:
                (directory / "status").write_text(json.dumps(sessions.status()))
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--allow-uid", type=int, action="append", default=[])
    args = parser.parse_args()
    configure_logging("info", "json")
    trio.run(serve, args.dir, args.allow_uid)


if __name__ == "__main__":
    main()
