"""API fields `claims`, `obo_session`, `client_capabilities`; sessions in status."""

from __future__ import annotations

import base64
import json

import test_api
from daemon_fakes import FakeBroker
from test_api import call

from agentid_daemon.api.routes import Api

api, broker = test_api.api, test_api.broker  # the shared fixtures

CHALLENGE = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"


async def test_claims_base64_reach_the_broker_as_json(api: Api, broker: FakeBroker) -> None:
    b64 = base64.b64encode(CHALLENGE.encode()).decode()
    resp, _ = await call(api, "POST", "/v1/token", {"profile": "bot", "claims": b64})
    assert resp.status == 200
    assert broker.claims is not None
    assert json.loads(broker.claims) == json.loads(CHALLENGE)
    await call(api, "POST", "/v1/token", {"profile": "bot"})
    assert broker.claims is None


async def test_bad_claims_are_a_400(api: Api, broker: FakeBroker) -> None:
    for bad in ("not-claims!", 12, "[]"):
        resp, body = await call(api, "POST", "/v1/token", {"claims": bad})
        assert resp.status == 400
        assert body["error"] == "invalid_request"
        assert body["error_description"].startswith("field 'claims'")
    assert broker.calls == []


async def test_session_and_capabilities_are_selection_fields(api: Api, broker: FakeBroker) -> None:
    body = {"profile": "obo", "obo_session": "job-1", "client_capabilities": ["cp1"]}
    resp, _ = await call(api, "POST", "/v1/token", body)
    assert resp.status == 200
    _, (req, _, _) = broker.calls[-1]
    assert req.obo_session == "job-1"
    assert req.user_token is None
    assert req.agent.client_capabilities == ("cp1",)
    resp, err = await call(api, "POST", "/v1/token", {"client_capabilities": [1]})
    assert resp.status == 400
    assert "client_capabilities" in err["error_description"]
    resp, err = await call(api, "POST", "/v1/token", {"profile": "bot", "obo_session": "x"})
    assert resp.status == 400
    assert "only valid with mode OBO" in err["error_description"]


async def test_status_lists_obo_sessions(api: Api) -> None:
    resp, body = await call(api, "GET", "/v1/status")
    assert resp.status == 200
    assert body["obo_sessions"] == [{"name": "job-1", "user": "sha256:0123456789abcdef"}]


async def test_delete_needs_no_user_token_for_obo(api: Api, broker: FakeBroker) -> None:
    resp, _ = await call(api, "DELETE", "/v1/token", {"profile": "obo", "obo_session": "job-1"})
    assert resp.status == 204
    kind, req = broker.calls[-1]
    assert kind == "invalidate"
    assert req.obo_session == "job-1"
    resp, _ = await call(api, "DELETE", "/v1/token", {"profile": "obo"})  # every user
    assert resp.status == 204
    assert broker.calls[-1][1].user_token is None
    resp, _ = await call(api, "POST", "/v1/flush", {"profile": "obo"})
    assert resp.status == 200
    assert broker.calls[-1][0] == "flush_profile"  # every key of the profile, every user
