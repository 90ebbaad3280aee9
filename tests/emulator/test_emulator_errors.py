"""Entra's error answers through MSAL: AADSTS code, JSON shape and HTTP status."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from emulator_msal_helpers import (
    GRAPH_DEFAULT,
    TX_SCOPE,
    PinnedSession,
    aadsts,
    agent_app,
    app,
    blueprint_app,
    emulator_issuer,
    t1,
    t2,
)

from agentid_emulator.jwt_tokens import TOKEN_EXCHANGE_APP_ID, fmi_subject

pytestmark = pytest.mark.timeout(60)
UNKNOWN_APP = "0badc0de-0000-4000-8000-000000000000"


def check(session: PinnedSession, result: dict[str, Any], code: int, status: int) -> None:
    assert "access_token" not in result, result
    assert aadsts(result) == code, result
    assert session.last is not None
    assert session.last.status_code == status
    body = session.last.json()
    assert set(body) >= {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert re.search(
        r" Trace ID: \S+ Correlation ID: \S+ Timestamp: \S+ \S+$", body["error_description"]
    )
    # MSAL sends client-request-id; Entra echoes it as the correlation id.
    sent = session.last.request.headers.get("client-request-id")
    assert sent
    assert body["correlation_id"] == sent
    if body["error"] == "invalid_client":
        assert status == 401


def test_7000215_wrong_secret(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    result = blueprint_app(emulator, s, secret="not-the-secret").acquire_token_for_client(
        [TX_SCOPE], fmi_path=emulator.agent_identity_app_id
    )
    check(s, result, 7000215, 401)
    assert result["error"] == "invalid_client"


def test_7000216_missing_credential(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    # An empty assertion: MSAL sends the assertion type but no credential value.
    result = app(
        emulator, emulator.blueprint_app_id, {"client_assertion": lambda: ""}, s
    ).acquire_token_for_client([TX_SCOPE], fmi_path=emulator.agent_identity_app_id)
    check(s, result, 7000216, 401)


def test_700024_expired_assertion(emulator: Any) -> None:
    issuer = emulator_issuer(emulator)
    expired = issuer.mint(
        emulator.tenant_id,
        {
            "aud": TOKEN_EXCHANGE_APP_ID,
            "azp": emulator.blueprint_app_id,
            "idtyp": "app",
            "sub": fmi_subject(
                emulator.tenant_id, emulator.blueprint_app_id, emulator.agent_identity_app_id
            ),
        },
        lifetime_s=600,
        now=time.time() - 3600,
    )
    s = PinnedSession(emulator.ca_bundle)
    check(s, agent_app(emulator, expired, s).acquire_token_for_client([GRAPH_DEFAULT]), 700024, 401)


def test_700024_with_short_lifetime(emulator_factory: Any) -> None:
    emu = emulator_factory(token_lifetime_s=1)
    token = t1(emu)
    time.sleep(1.5)  # not a timing assertion: just let the 1 s token expire
    s = PinnedSession(emu.ca_bundle)
    check(s, agent_app(emu, token, s).acquire_token_for_client([GRAPH_DEFAULT]), 700024, 401)


def test_7002137_assertion_for_another_subject(emulator: Any) -> None:
    # The agent's own T2 is no T1: its subject is the agent, not the blueprint's fmi path.
    first = t1(emulator)
    s = PinnedSession(emulator.ca_bundle)
    result = agent_app(emulator, t2(emulator, first), s).acquire_token_for_client([GRAPH_DEFAULT])
    check(s, result, 7002137, 401)


def test_7002137_t1_of_another_blueprint(emulator: Any) -> None:
    issuer = emulator_issuer(emulator)
    other = issuer.mint(
        emulator.tenant_id,
        {
            "aud": TOKEN_EXCHANGE_APP_ID,
            "idtyp": "app",
            "sub": fmi_subject(emulator.tenant_id, UNKNOWN_APP, emulator.agent_identity_app_id),
        },
        lifetime_s=600,
    )
    s = PinnedSession(emulator.ca_bundle)
    check(s, agent_app(emulator, other, s).acquire_token_for_client([GRAPH_DEFAULT]), 7002137, 401)


def test_50034_user_not_found(emulator: Any) -> None:
    first = t1(emulator)
    second = t2(emulator, first)
    s = PinnedSession(emulator.ca_bundle)
    result = agent_app(emulator, first, s).acquire_token_by_user_federated_identity_credential(
        ["User.Read"], assertion=second, username="nobody@contoso.example"
    )
    check(s, result, 50034, 400)
    assert "nobody" not in result["error_description"]  # Entra hides the name


def test_50034_human_user_is_not_an_agent_user(emulator: Any) -> None:
    first = t1(emulator)
    s = PinnedSession(emulator.ca_bundle)
    result = agent_app(emulator, first, s).acquire_token_by_user_federated_identity_credential(
        ["User.Read"], assertion=t2(emulator, first), username=emulator.user_upn
    )
    check(s, result, 50034, 400)


@pytest.mark.parametrize("audience", ["agent", "agent_uri", "https://graph.microsoft.com"])
def test_50013_obo_audience(emulator: Any, audience: str) -> None:
    # The user token must be for the blueprint, never for the agent identity
    # (agent-on-behalf-of-oauth-flow.md: "Tc (aud) == Agent ID blueprint client ID").
    agent = emulator.agent_identity_app_id
    aud = {"agent": agent, "agent_uri": f"api://{agent}"}.get(audience, audience)
    user_token = emulator.user_token(emulator.user_upn, aud)
    s = PinnedSession(emulator.ca_bundle)
    result = agent_app(emulator, t1(emulator), s).acquire_token_on_behalf_of(
        user_token, ["User.Read"]
    )
    check(s, result, 50013, 400)
    assert result["error"] == "invalid_grant"
    assert f"the expected audience is '{emulator.blueprint_app_id}'" in result["error_description"]


def test_1002012_scope_without_default(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    result = agent_app(emulator, t1(emulator), s).acquire_token_for_client(["User.Read"])
    check(s, result, 1002012, 400)
    assert result["error"] == "invalid_scope"


def test_900144_missing_parameter(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    result = blueprint_app(emulator, s).acquire_token_for_client([TX_SCOPE])  # no fmi_path
    check(s, result, 900144, 400)
    assert "'fmi_path'" in result["error_description"]


def test_70003_unsupported_grant_type(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    result = blueprint_app(emulator, s).acquire_token_by_refresh_token("rt", [GRAPH_DEFAULT])
    check(s, result, 70003, 400)
    assert result["error"] == "unsupported_grant_type"


def test_700016_unknown_application(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    result = app(emulator, UNKNOWN_APP, "secret", s).acquire_token_for_client(
        [TX_SCOPE], fmi_path=emulator.agent_identity_app_id
    )
    check(s, result, 700016, 400)
    assert result["error"] == "unauthorized_client"


def test_unknown_tenant_discovery_fails_cleanly(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    resp = s.get(f"{emulator.authority_host}/{UNKNOWN_APP}/v2.0/.well-known/openid-configuration")
    assert resp.status_code == 400
    assert resp.json()["error_codes"] == [90002]
