"""Bad input is a 400, always (issue rows 6 and 11), through the real config and broker.

The API runs with the daemon's own components (``Config`` from a file, the
real ``Broker`` and cache keys); the requests below are refused before any
identity provider call, so no emulator is needed.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agentid_daemon.api.routes import Api, ApiState
from agentid_daemon.app import build_components
from agentid_daemon.config.loader import load_config

GUID = "11111111-2222-3333-4444-555555555555"


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def api(tmp_path: Path) -> Api:
    secret = tmp_path / "bp.secret"
    secret.write_text("x")
    config_path = tmp_path / "config.toml"
    config_path.write_text(f"""
default_profile = "app"
[defaults]
tenant_id = "{GUID}"
blueprint_app_id = "{GUID}"
agent_identity_app_id = "{GUID}"
authority_host = "https://127.0.0.1:9"
blueprint_credential = {{ secret_file = "{secret}" }}
[profiles.app]
mode = "AutonomousApp"
[profiles.obo]
mode = "OBO"
""")
    config = load_config(config_path, environ={})
    parts = build_components(config)
    state = ApiState(
        broker=parts.broker, metrics=parts.metrics, config=config, config_path=str(config_path)
    )
    state.listening = True
    return Api(state)


async def post(api: Api, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
    resp = await api.handle_request(method, "/v1/token", [], body)
    return resp.status, json.loads(resp.body)


HUGE = b"9" * 5000


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("POST", b'{"min_validity_s": ' + HUGE + b"}", "too many digits"),
        ("POST", b'{"profile": "app", "scope": ' + HUGE + b"}", "too many digits"),
        ("DELETE", b'{"tenant_id": -' + HUGE + b"}", "too many digits"),
        (
            "POST",
            json.dumps({"profile": "obo", "user_token": "\ud800" + jwt({"x": 1})}).encode(),
            "'user_token' is not valid Unicode",
        ),
        ("POST", json.dumps({"scope": ["\udc80/.default"]}).encode(), "'scope' is not valid"),
        ("POST", json.dumps({"user_upn": "a\ud83d@b.c"}).encode(), "'user_upn' is not valid"),
        ("DELETE", json.dumps({"tenant_id": "\udfff"}).encode(), "'tenant_id' is not valid"),
    ],
)
async def test_unparseable_values_are_400(api: Api, method: str, body: bytes, message: str) -> None:
    status, err = await post(api, method, body)
    assert (status, err["error"]) == (400, "invalid_request"), err
    assert message in err["error_description"]


async def test_expired_user_token_is_refused_before_any_cache_lookup(api: Api) -> None:
    """A user token past its exp gets 400 (exit 2), never a cached OBO token."""
    expired = jwt({"aud": GUID, "exp": int(time.time()) - 5, "upn": "u@example.com"})
    status, err = await post(
        api, "POST", json.dumps({"profile": "obo", "user_token": expired}).encode()
    )
    assert (status, err["error"]) == (400, "invalid_request")
    assert "the user token expired at" in err["error_description"]
    assert err["hint"]
    assert expired not in json.dumps(err)
    assert api.state.broker.status() == []  # nothing was looked up, nothing cached
