"""POST /v1/reload and the request path's own look at the config file (real Daemon and Api)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import trio
from daemon_fakes import FakeBroker, FakeCache

from agentid_daemon.app import Components, Daemon
from agentid_daemon.config.loader import load_config
from agentid_daemon.process.sdnotify import Notifier

PROFILE = """
[profiles.{name}]
tenant_id = "11111111-1111-1111-1111-111111111111"
blueprint_app_id = "22222222-2222-2222-2222-222222222222"
agent_identity_app_id = "33333333-3333-3333-3333-333333333333"
blueprint_credential = {{ env = "NOPE" }}
"""


def daemon_for(path: Path) -> Daemon:
    return Daemon(
        load_config(path, environ={}),
        config_path=str(path),
        notifier=Notifier(environ={}),
        components=Components(FakeCache(), FakeBroker(), None),
    )


async def call(daemon: Daemon, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    with trio.fail_after(10):
        resp = await daemon.api.handle_request(method, target, [], raw)
    return resp.status, json.loads(resp.body) if resp.body else None


async def test_reload_says_loaded_unchanged_or_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(PROFILE.format(name="one"))
    daemon = daemon_for(path)
    path.write_text(PROFILE.format(name="one") + PROFILE.format(name="two"))
    status, body = await call(daemon, "POST", "/v1/reload")
    assert status == 200
    assert body == {
        "result": "loaded",
        "config_path": str(path),
        "error": None,
        "profiles": {"added": ["two"], "removed": [], "changed": []},
    }
    assert (await call(daemon, "POST", "/v1/reload"))[1]["result"] == "unchanged"
    path.write_text("[profiles.three\n")
    status, body = await call(daemon, "POST", "/v1/reload")
    assert status == 200 and body["result"] == "error"
    assert "invalid TOML" in body["error"]
    _, info = await call(daemon, "GET", "/v1/status")
    assert info["daemon"]["profiles"] == ["one", "two"]  # the previous config stays
    assert info["daemon"]["last_reload_error"] == body["error"]
    status, bad = await call(daemon, "POST", "/v1/reload", {"force": True})
    assert status == 400 and bad["error"] == "invalid_request"


async def test_status_reports_the_served_file_and_notices_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    daemon = daemon_for(path)  # no file yet
    _, info = await call(daemon, "GET", "/v1/status")
    assert info["daemon"]["config_file"] is None
    path.write_text(PROFILE.format(name="one"))
    _, info = await call(daemon, "GET", "/v1/status")  # looks at the disk first
    st = os.stat(path)
    assert info["daemon"]["config_file"] == {
        "device": st.st_dev,
        "inode": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
        "size": st.st_size,
    }
    assert info["daemon"]["profiles"] == ["one"]


async def test_a_token_request_for_a_profile_just_written_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    daemon = daemon_for(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.cache.run)
        status, body = await call(daemon, "POST", "/v1/token", {"profile": "one"})
        assert status == 404 and body["error"] == "unknown_profile"
        path.write_text(PROFILE.format(name="one"))  # within the second: no throttled stat
        status, body = await call(daemon, "POST", "/v1/token", {"profile": "one"})
        assert status == 200, body
        nursery.cancel_scope.cancel()
