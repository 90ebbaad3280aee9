"""``POST /v1/shutdown`` and the status' ``recent_errors`` through the API (fake broker)."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_fakes import FakeBroker, load_api_config

from agentid_daemon.api.routes import Api, ApiState


def make_api(tmp_path: Path, broker: FakeBroker) -> Api:
    return Api(ApiState(broker=broker, metrics=None, config=load_api_config(tmp_path)))


async def test_shutdown_asks_the_daemon_once_the_answer_is_built(tmp_path: Path) -> None:
    api = make_api(tmp_path, FakeBroker())
    resp = await api.handle_request("POST", "/v1/shutdown", [], b"")
    assert resp.status == 404  # no daemon wired a way to stop
    asked: list[bool] = []
    api.state.request_shutdown = lambda: asked.append(True)
    api.state.run_mode = "autostart"
    resp = await api.handle_request("POST", "/v1/shutdown", [], b"")
    assert resp.status == 202
    body = json.loads(resp.body)
    assert (body["stopping"], body["run_mode"], asked) == (True, "autostart", [True])
    assert isinstance(body["pid"], int)
    resp = await api.handle_request("GET", "/v1/shutdown", [], b"")
    assert resp.status == 405
    resp = await api.handle_request("POST", "/v1/shutdown", [], b'{"now": ')
    assert resp.status == 400


async def test_status_lists_recent_errors(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.errors = [{"kind": "resource", "profile": "app", "error": "identity_provider_error"}]
    api = make_api(tmp_path, broker)
    resp = await api.handle_request("GET", "/v1/status", [], b"")
    body = json.loads(resp.body)
    assert body["recent_errors"] == broker.errors
    assert body["daemon"]["exit_when_idle_s"] == 0.0
