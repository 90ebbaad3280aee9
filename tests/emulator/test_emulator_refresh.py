"""Emulator (sans-IO): OBO refresh tokens, the refresh-token grant of an agent
identity, claims requests (xms_cc), and revoked tokens."""

from __future__ import annotations

import json
import time

import pytest
import test_emulator_legs
from test_emulator_legs import AGENT, BP, GRAPH, TENANT, agent_form, claims_of, code, ok, t1_form

from agentid_emulator import directory as d
from agentid_emulator.errors import AadstsError
from agentid_emulator.legs import GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN, TokenService, classify
from agentid_emulator.refresh_tokens import REFRESH_TOKEN_LIFETIME_S

keys, cert, service = test_emulator_legs.keys, test_emulator_legs.cert, test_emulator_legs.service

MSAL_OIDC = "offline_access openid profile"  # what MSAL adds to the OBO scope


def get_t1(service: TokenService) -> str:
    return str(ok(service.handle(TENANT, t1_form()))["access_token"])


def obo_form(service: TokenService, scope: str = f"User.Read {MSAL_OIDC}") -> dict[str, str]:
    return agent_form(
        get_t1(service),
        grant_type=GRANT_JWT_BEARER,
        requested_token_use="on_behalf_of",
        scope=scope,
        assertion=service.interactive_user_token(TENANT, d.DEMO_USER_UPN),
    )


def refresh_form(
    service: TokenService, refresh_token: str, scope: str = f"Mail.Read {MSAL_OIDC}"
) -> dict[str, str]:
    # agent-on-behalf-of-oauth-flow.md, "Refresh token support": T1 is the assertion.
    return agent_form(
        get_t1(service), grant_type=GRANT_REFRESH_TOKEN, refresh_token=refresh_token, scope=scope
    )


def test_classify_refresh() -> None:
    assert classify({"grant_type": GRANT_REFRESH_TOKEN}) == "obo_refresh"


def test_obo_issues_a_refresh_token_only_for_offline_access(service: TokenService) -> None:
    body = ok(service.handle(TENANT, obo_form(service)))
    assert body["refresh_token"].startswith("1.A")
    assert len(body["refresh_token"]) > 300
    assert "offline_access" in body["scope"].split()
    plain = ok(service.handle(TENANT, obo_form(service, scope="User.Read")))
    assert "refresh_token" not in plain


def test_refresh_token_grant_for_the_agent(service: TokenService) -> None:
    first = ok(service.handle(TENANT, obo_form(service)))
    body = ok(service.handle(TENANT, refresh_form(service, first["refresh_token"])))
    claims = claims_of(body["access_token"])
    assert claims["oid"] == d.DEMO_USER_OID
    assert claims["idtyp"] == "user"
    assert claims["scp"] == "Mail.Read"
    assert claims["azp"] == AGENT
    assert body["refresh_token"] != first["refresh_token"]  # rotated
    # the rotated token works too (after the user token's expiry: test_resource_says_no_e2e)
    assert ok(service.handle(TENANT, refresh_form(service, body["refresh_token"])))


def test_refresh_token_refusals(service: TokenService) -> None:
    rt = ok(service.handle(TENANT, obo_form(service)))["refresh_token"]
    assert code(service.handle(TENANT, refresh_form(service, "1.Anot-a-token"))) == 9002313
    missing = refresh_form(service, rt)
    del missing["refresh_token"]
    assert code(service.handle(TENANT, missing)) == 900144
    later = time.time() + REFRESH_TOKEN_LIFETIME_S + 1
    with pytest.raises(AadstsError) as expired:
        service.grants.redeem(rt, tenant_id=TENANT, client_id=AGENT, now=later)
    assert expired.value.code == 700082
    stale_t1 = service.handle(TENANT, refresh_form(service, rt), now=later)
    assert code(stale_t1) == 700024  # the T1 assertion is checked first
    no_assertion = {
        k: v for k, v in refresh_form(service, rt).items() if not k.startswith("client_assertion")
    }
    assert service.handle(TENANT, no_assertion).status == 401
    blueprint = {
        "client_id": BP,
        "client_secret": d.DEMO_BLUEPRINT_SECRET,
        "grant_type": GRANT_REFRESH_TOKEN,
        "refresh_token": rt,
        "scope": GRAPH,
    }
    assert code(service.handle(TENANT, blueprint)) == 70003
    assert service.grants.revoke_refresh_token(rt)
    assert code(service.handle(TENANT, refresh_form(service, rt))) == 9002313


def test_claims_request_stamps_capabilities(service: TokenService) -> None:
    caps = json.dumps(
        {"access_token": {"xms_cc": {"values": ["cp1"]}, "nbf": {"essential": True, "value": "1"}}}
    )
    app = ok(service.handle(TENANT, agent_form(get_t1(service), claims=caps)))
    assert claims_of(app["access_token"])["xms_cc"] == ["cp1"]
    obo = ok(service.handle(TENANT, {**obo_form(service), "claims": caps}))
    assert claims_of(obo["access_token"])["xms_cc"] == ["cp1"]
    plain = ok(service.handle(TENANT, agent_form(get_t1(service))))
    assert "xms_cc" not in claims_of(plain["access_token"])
    bad = service.handle(TENANT, agent_form(get_t1(service), claims="{nope"))
    assert code(bad) == 9002313
    assert bad.body["error"] == "invalid_request"


def test_revoked_token_is_never_handed_back(service: TokenService) -> None:
    token = ok(service.handle(TENANT, agent_form(get_t1(service))))["access_token"]
    uti = claims_of(token)["uti"]
    service.grants.revoke_uti(uti)
    assert service.introspect(token)["revoked"] is True
    claims = json.dumps({"access_token": {"nbf": {"essential": True, "value": "1"}}})
    fresh = ok(service.handle(TENANT, agent_form(get_t1(service), claims=claims)))
    assert fresh["access_token"] != token
    assert service.introspect(fresh["access_token"]) == {
        "active": True,
        "revoked": False,
        "aud": "https://graph.microsoft.com",
        "xms_cc": None,
    }


@pytest.mark.parametrize("token", ["", "x.y.z", "eyJ.eyJ.sig"])
def test_introspect_garbage(service: TokenService, token: str) -> None:
    assert service.introspect(token) == {
        "active": False,
        "revoked": False,
        "aud": None,
        "xms_cc": None,
    }


def test_log_audit_recognises_the_emulators_refresh_tokens() -> None:
    """The session-wide log audit must catch these in any log line."""
    from log_audit import REFRESH_TOKEN_RE

    from agentid_emulator.refresh_tokens import new_refresh_token

    for _ in range(20):
        line = json.dumps({"event": "oops", "detail": f"rt={new_refresh_token()}"})
        assert REFRESH_TOKEN_RE.search(line)
