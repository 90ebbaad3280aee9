"""Sans-IO tests of the token endpoint (TokenService): forms in, responses out."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agentid_emulator import directory as d
from agentid_emulator.certs import new_key, self_signed_certificate, thumbprints
from agentid_emulator.client_auth import JWT_BEARER_ASSERTION_TYPE
from agentid_emulator.jwt_tokens import TOKEN_EXCHANGE_APP_ID, TokenIssuer, fmi_subject
from agentid_emulator.legs import GRANT_JWT_BEARER, TokenService, classify

HOST = "https://127.0.0.1:4443"
TENANT = d.DEMO_TENANT_ID
BP = d.DEMO_BLUEPRINT_APP_ID
AGENT = d.DEMO_AGENT_APP_ID
TX = "api://AzureADTokenExchange/.default"
GRAPH = "https://graph.microsoft.com/.default"
ENDPOINT = f"{HOST}/{TENANT}/oauth2/v2.0/token"


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"signing": new_key(), "cert": new_key(), "other": new_key()}


@pytest.fixture(scope="module")
def cert(keys: dict[str, rsa.RSAPrivateKey]) -> Any:
    return self_signed_certificate(keys["cert"], "bp")


@pytest.fixture
def service(keys: dict[str, rsa.RSAPrivateKey], cert: Any) -> TokenService:
    directory = d.demo_directory(blueprint_certificate=cert)
    return TokenService(directory, TokenIssuer(HOST, keys["signing"]), token_lifetime_s=3600)


def ok(resp: Any) -> dict[str, Any]:
    assert resp.status == 200, resp.body
    return dict(resp.body)


def code(resp: Any) -> int:
    return int(resp.body["error_codes"][0])


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def t1_form(**extra: str) -> dict[str, str]:
    return {
        "client_id": BP,
        "client_secret": d.DEMO_BLUEPRINT_SECRET,
        "scope": TX,
        "grant_type": "client_credentials",
        "fmi_path": AGENT,
        **extra,
    }


def agent_form(t1_token: str, **extra: str) -> dict[str, str]:
    return {
        "client_id": AGENT,
        "client_assertion": t1_token,
        "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
        "grant_type": "client_credentials",
        "scope": GRAPH,
        **extra,
    }


def get_t1(service: TokenService) -> str:
    return str(ok(service.handle(TENANT, t1_form()))["access_token"])


def test_classify() -> None:
    assert classify(t1_form()) == "t1"
    assert classify(agent_form("x")) == "autonomous_app"
    assert classify(agent_form("x", scope=TX)) == "t2"
    assert classify({"grant_type": GRANT_JWT_BEARER}) == "obo"
    assert classify({"grant_type": "user_fic"}) == "user_fic"
    assert classify({"grant_type": "password"}) is None


def test_t1_claims(service: TokenService) -> None:
    claims = claims_of(get_t1(service))
    assert claims["aud"] == TOKEN_EXCHANGE_APP_ID
    assert claims["sub"] == fmi_subject(TENANT, BP, AGENT)
    assert claims["sub"].startswith("/eid1/c/pub/t/")
    assert claims["iss"] == f"{HOST}/{TENANT}/v2.0"
    assert claims["azpacr"] == "1"


def test_fmi_subject_uses_little_endian_guid_bytes() -> None:
    sub = fmi_subject("00000001-0002-0003-0405-060708090a0b", BP, AGENT)
    # bytes_le of that GUID: 01000000 0200 0300 0405060708090a0b
    assert sub.split("/")[5] == "AQAAAAIAAwAEBQYHCAkKCw"


def test_correlation_id_echoed(service: TokenService) -> None:
    resp = service.handle(TENANT, t1_form(client_secret="bad"), correlation_id="corr-1")
    assert resp.status == 401
    assert resp.body["correlation_id"] == "corr-1"
    assert "Correlation ID: corr-1 " in resp.body["error_description"]
    assert resp.aadsts == 7000215
    assert resp.leg == "t1"
    assert resp.client_id == BP


def test_secret_never_echoed(service: TokenService) -> None:
    resp = service.handle(TENANT, t1_form(client_secret="s3cr3t-value"))
    assert "s3cr3t-value" not in repr(resp)
    assert "s3cr3t-value" not in str(resp.body)


def _cert_assertion(
    key: rsa.RSAPrivateKey,
    cert: Any,
    *,
    aud: str = ENDPOINT,
    iss: str = BP,
    lifetime: int = 600,
    alg: str = "PS256",
    header: str = "x5t#S256",
) -> str:
    sha1, sha256 = thumbprints(cert)
    now = int(time.time())
    return jwt.encode(
        {"aud": aud, "iss": iss, "sub": iss, "jti": "j", "nbf": now, "exp": now + lifetime},
        key,
        algorithm=alg,
        headers={header: sha256 if header == "x5t#S256" else sha1},
    )


def test_certificate_assertion(service: TokenService, keys: Any, cert: Any) -> None:
    form = t1_form(client_secret="", client_assertion_type=JWT_BEARER_ASSERTION_TYPE)
    good = _cert_assertion(keys["cert"], cert)
    assert ok(service.handle(TENANT, {**form, "client_assertion": good}))
    rs = _cert_assertion(keys["cert"], cert, alg="RS256", header="x5t")
    assert ok(service.handle(TENANT, {**form, "client_assertion": rs}))
    cases = {
        700027: _cert_assertion(keys["other"], cert),  # wrong key
        700024: _cert_assertion(keys["cert"], cert, lifetime=-10),  # expired
        700021: _cert_assertion(keys["cert"], cert, iss=AGENT),  # iss != client
    }
    for expected, assertion in cases.items():
        assert code(service.handle(TENANT, {**form, "client_assertion": assertion})) == expected
    v1 = _cert_assertion(keys["cert"], cert, aud=ENDPOINT.replace("/v2.0/", "/"))
    assert ok(service.handle(TENANT, {**form, "client_assertion": v1}))
    bad_aud = _cert_assertion(keys["cert"], cert, aud="https://elsewhere/token")
    assert code(service.handle(TENANT, {**form, "client_assertion": bad_aud})) == 700027
    unknown = self_signed_certificate(keys["other"], "other")
    stranger = _cert_assertion(keys["other"], unknown)
    assert code(service.handle(TENANT, {**form, "client_assertion": stranger})) == 700027


def test_federated_assertion(service: TokenService) -> None:
    issuer = service.issuer
    workload = HOST + d.WORKLOAD_ISSUER_PATH
    form = t1_form(client_secret="", client_assertion_type=JWT_BEARER_ASSERTION_TYPE)

    def fed(**claims: Any) -> str:
        base = {"aud": "api://AzureADTokenExchange", "sub": d.DEMO_WORKLOAD_SUBJECT}
        return issuer.mint(TENANT, {**base, **claims}, lifetime_s=600, issuer=workload)

    assert ok(service.handle(TENANT, {**form, "client_assertion": fed()}))
    assert code(service.handle(TENANT, {**form, "client_assertion": fed(sub="x")})) == 700213
    assert code(service.handle(TENANT, {**form, "client_assertion": fed(aud="x")})) == 700212
    other = issuer.mint(
        TENANT,
        {"aud": "api://AzureADTokenExchange", "sub": "s"},
        lifetime_s=600,
        issuer="https://elsewhere",
    )
    assert code(service.handle(TENANT, {**form, "client_assertion": other})) == 700211
    assert code(service.handle(TENANT, {**form, "client_assertion": "garbage"})) == 50027
    wrong_type = {**form, "client_assertion": fed(), "client_assertion_type": "x"}
    assert code(service.handle(TENANT, wrong_type)) == 50027


def test_agent_legs(service: TokenService) -> None:
    first = get_t1(service)
    app_claims = claims_of(ok(service.handle(TENANT, agent_form(first)))["access_token"])
    assert app_claims["aud"] == "https://graph.microsoft.com"
    assert app_claims["roles"] == ["User.Read.All"]
    second = ok(service.handle(TENANT, agent_form(first, scope=TX)))["access_token"]
    t2_claims = claims_of(second)
    assert t2_claims["aud"] == TOKEN_EXCHANGE_APP_ID
    assert "roles" not in t2_claims
    fic = {
        "client_id": AGENT,
        "client_assertion": first,
        "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
        "grant_type": "user_fic",
        "scope": "User.Read openid profile offline_access",
        "user_federated_identity_credential": second,
        "username": d.DEMO_AGENT_USER_UPN,
    }
    body = ok(service.handle(TENANT, fic))
    assert claims_of(body["access_token"])["upn"] == d.DEMO_AGENT_USER_UPN
    assert body["scope"] == "User.Read openid profile offline_access"
    assert claims_of(body["id_token"])["aud"] == AGENT
    assert body["client_info"]
    # T1 is not a valid user_fic credential, and T2 is not a client assertion.
    assert (
        code(service.handle(TENANT, {**fic, "user_federated_identity_credential": first}))
        == 7002137
    )
    assert code(service.handle(TENANT, {**fic, "client_assertion": second})) == 7002137
    no_user = {k: v for k, v in fic.items() if k != "username"}
    assert code(service.handle(TENANT, no_user)) == 900144
    by_oid = {**no_user, "user_id": d.DEMO_AGENT_USER_OID}
    assert ok(service.handle(TENANT, by_oid))


def test_agent_assertion_checks(service: TokenService, keys: Any) -> None:
    issuer = service.issuer
    sub = fmi_subject(TENANT, BP, AGENT)
    base = {"aud": TOKEN_EXCHANGE_APP_ID, "sub": sub, "idtyp": "app"}
    assert ok(service.handle(TENANT, agent_form(issuer.mint(TENANT, base, lifetime_s=60))))
    expired = issuer.mint(TENANT, base, lifetime_s=60, now=time.time() - 120)
    assert code(service.handle(TENANT, agent_form(expired))) == 700024
    wrong_aud = issuer.mint(TENANT, {**base, "aud": "x"}, lifetime_s=60)
    assert code(service.handle(TENANT, agent_form(wrong_aud))) == 700212
    wrong_iss = issuer.mint(TENANT, base, lifetime_s=60, issuer="https://elsewhere/v2.0")
    assert code(service.handle(TENANT, agent_form(wrong_iss))) == 700211
    forged = TokenIssuer(HOST, keys["other"], kid=issuer.kid).mint(TENANT, base, lifetime_s=60)
    assert code(service.handle(TENANT, agent_form(forged))) == 700027
    assert code(service.handle(TENANT, agent_form(""))) == 7000216
    assert code(service.handle(TENANT, agent_form("x", client_secret="s"))) == 7000215
    # Time is the caller's: a valid T1 is expired an hour later.
    first = get_t1(service)
    later = service.handle(TENANT, agent_form(first), now=time.time() + 3601)
    assert code(later) == 700024


def test_obo(service: TokenService) -> None:
    first = get_t1(service)
    form = agent_form(
        first,
        grant_type=GRANT_JWT_BEARER,
        requested_token_use="on_behalf_of",
        scope="User.Read Mail.Read",
    )

    def user_token(audience: str | None = None, upn: str = d.DEMO_USER_UPN) -> str:
        return service.interactive_user_token(TENANT, upn, audience)

    # agent-on-behalf-of-oauth-flow.md: "Tc (aud) == Agent ID blueprint client ID".
    body = ok(service.handle(TENANT, {**form, "assertion": user_token(BP)}))
    claims = claims_of(body["access_token"])
    assert claims["scp"] == "User.Read Mail.Read"
    assert claims["idtyp"] == "user"
    assert ok(service.handle(TENANT, {**form, "assertion": user_token(f"api://{BP}")}))
    assert ok(service.handle(TENANT, {**form, "assertion": user_token()}))  # default: BP
    assert code(service.handle(TENANT, {**form, "assertion": user_token("api://x")})) == 50013
    app_token = ok(service.handle(TENANT, agent_form(first)))["access_token"]
    assert code(service.handle(TENANT, {**form, "assertion": app_token})) == 50013
    stale = {**form, "assertion": user_token(BP)}
    assert code(service.handle(TENANT, stale, now=time.time() + 3601)) == 700024  # T1 first
    assert code(service.handle(TENANT, form)) == 900144
    wrong_use = {**form, "assertion": user_token(BP), "requested_token_use": "x"}
    assert code(service.handle(TENANT, wrong_use)) == 900144


@pytest.mark.parametrize("audience", [AGENT, f"api://{AGENT}"])
def test_obo_refuses_a_user_token_for_the_agent_identity(
    service: TokenService, audience: str
) -> None:
    # An agent identity exposes no API: no user can get a token for it.
    form = agent_form(
        get_t1(service),
        grant_type=GRANT_JWT_BEARER,
        requested_token_use="on_behalf_of",
        scope="User.Read",
        assertion=service.interactive_user_token(TENANT, d.DEMO_USER_UPN, audience),
    )
    resp = service.handle(TENANT, form)
    assert code(resp) == 50013
    assert resp.body["error"] == "invalid_grant"
    description = resp.body["error_description"]
    assert description.startswith(
        "AADSTS50013: Assertion audience does not match the Client "
        f"app presenting the assertion. The audience in the assertion "
        f"was '{audience}' and the expected audience is '{BP}'"
    )


def test_interactive_user_token_is_for_the_blueprint(service: TokenService) -> None:
    # Like the recorded client token (joetanx/mslab auth-flows.md 5.2.3): aud = the
    # blueprint, scp = access_agent.
    claims = claims_of(service.interactive_user_token(TENANT, d.DEMO_USER_UPN))
    assert claims["aud"] == BP
    assert claims["scp"] == "access_agent"
    assert claims["idtyp"] == "user"
    assert claims["oid"] == d.DEMO_USER_OID
    uri = claims_of(service.interactive_user_token(TENANT, d.DEMO_USER_UPN, f"api://{BP}"))
    assert uri["aud"] == f"api://{BP}"
    assert uri["scp"] == "access_agent"
    other = claims_of(service.interactive_user_token(TENANT, d.DEMO_USER_UPN, "api://my-api"))
    assert other["scp"] == "access_as_user"
    short = claims_of(service.interactive_user_token(TENANT, d.DEMO_USER_UPN, lifetime_s=60))
    assert short["exp"] - short["iat"] == 60


def test_blueprint_own_token_needs_no_fmi_path(service: TokenService) -> None:
    # create-delete-agent-identities.md, "Get an access token using agent identity blueprint".
    form = t1_form(scope=GRAPH)
    del form["fmi_path"]
    assert classify(form) == "autonomous_app"
    assert service.leg_of(TENANT, form) == "blueprint_app"
    resp = service.handle(TENANT, form)
    assert resp.leg == "blueprint_app"
    claims = claims_of(ok(resp)["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["idtyp"] == "app"
    assert claims["appid"] == claims["azp"] == claims["oid"] == claims["sub"] == BP
    assert claims["appidacr"] == "1"  # client secret
    assert claims["roles"] == list(d.DEMO_BLUEPRINT_ROLES)
    # The exchange scope still names the agent: fmi_path stays required there.
    no_fmi = {k: v for k, v in t1_form().items() if k != "fmi_path"}
    resp = service.handle(TENANT, no_fmi)
    assert code(resp) == 900144
    assert "fmi_path" in resp.body["error_description"]
    assert resp.leg == "t1"
    assert code(service.handle(TENANT, {**form, "scope": "User.Read"})) == 1002012
    assert code(service.handle(TENANT, {**form, "client_secret": "wrong"})) == 7000215


def test_agent_claims_as_recorded(service: TokenService) -> None:
    # Facets of the public recordings ("AgenticTokens from Console"; joetanx/mslab).
    first = get_t1(service)
    t1 = claims_of(first)
    assert (t1["xms_act_fct"], t1["xms_sub_fct"], t1["xms_idrel"]) == ("9 1", "1 9", "14 7")
    assert "xms_par_app_azp" not in t1
    t2 = claims_of(ok(service.handle(TENANT, agent_form(first, scope=TX)))["access_token"])
    assert (t2["xms_act_fct"], t2["xms_sub_fct"], t2["xms_idrel"]) == ("1 9 11", "11 1 9", "7 12")
    assert t2["xms_par_app_azp"] == BP
    app = claims_of(ok(service.handle(TENANT, agent_form(first)))["access_token"])
    assert (app["xms_act_fct"], app["xms_sub_fct"], app["xms_idrel"]) == (
        "3 11 9",
        "11 3 9",
        "28 7",
    )
    assert app["xms_par_app_azp"] == BP
    obo_form = agent_form(
        first,
        grant_type=GRANT_JWT_BEARER,
        scope="User.Read",
        requested_token_use="on_behalf_of",
        assertion=service.interactive_user_token(TENANT, d.DEMO_USER_UPN),
    )
    obo = claims_of(ok(service.handle(TENANT, obo_form))["access_token"])
    assert (obo["xms_act_fct"], obo["xms_sub_fct"], obo["xms_idrel"]) == ("3 9 11", "3 10", "18 1")
    assert obo["xms_par_app_azp"] == BP
    second = ok(service.handle(TENANT, agent_form(first, scope=TX)))["access_token"]
    fic = agent_form(
        first,
        grant_type="user_fic",
        scope="User.Read",
        user_federated_identity_credential=second,
        username=d.DEMO_AGENT_USER_UPN,
    )
    user = claims_of(ok(service.handle(TENANT, fic))["access_token"])
    assert (user["xms_act_fct"], user["xms_sub_fct"], user["xms_idrel"]) == (
        "1 9 11",
        "1 13",
        "12 1",
    )
    assert user["xms_par_app_azp"] == BP
    own = t1_form(scope=GRAPH)
    del own["fmi_path"]
    bp = claims_of(ok(service.handle(TENANT, own))["access_token"])
    assert (bp["xms_act_fct"], bp["xms_sub_fct"], bp["xms_idrel"]) == ("9 3", "9 3", "8 7")


def test_obo_expired_user_token(service: TokenService) -> None:
    first = get_t1(service)
    expired = service.issuer.mint(
        TENANT,
        {"aud": BP, "idtyp": "user", "oid": d.DEMO_USER_OID},
        lifetime_s=60,
        now=time.time() - 120,
    )
    form = agent_form(
        first, grant_type=GRANT_JWT_BEARER, requested_token_use="on_behalf_of", assertion=expired
    )
    assert code(service.handle(TENANT, form)) == 500133


@pytest.mark.parametrize(
    "form, expected",
    [
        ({"client_id": BP}, 900144),
        ({"grant_type": "password", "client_id": BP}, 70003),
        ({"grant_type": "client_credentials"}, 900144),
        (t1_form(client_id="0badc0de-0000-4000-8000-000000000000"), 700016),
        (t1_form(fmi_path="0badc0de-0000-4000-8000-000000000000"), 700016),
        (t1_form(scope=GRAPH), 70011),
        (t1_form(scope="User.Read"), 1002012),
        (t1_form(scope=""), 900144),
        (t1_form(grant_type=GRANT_JWT_BEARER), 70003),
    ],
)
def test_request_errors(service: TokenService, form: dict[str, str], expected: int) -> None:
    assert code(service.handle(TENANT, form)) == expected


def test_unknown_tenant(service: TokenService) -> None:
    resp = service.handle("0badc0de-0000-4000-8000-000000000000", t1_form())
    assert resp.status == 400
    assert code(resp) == 90002


def test_refresh_in(keys: Any) -> None:
    directory = d.demo_directory()
    issuer = TokenIssuer(HOST, keys["signing"])
    short = TokenService(directory, issuer, token_lifetime_s=3600)
    assert "refresh_in" not in ok(short.handle(TENANT, t1_form()))
    long = TokenService(directory, issuer, token_lifetime_s=7200)
    assert ok(long.handle(TENANT, t1_form()))["refresh_in"] == 3600
    forced = TokenService(directory, issuer, token_lifetime_s=600, refresh_in_s=100)
    body = ok(forced.handle(TENANT, t1_form()))
    assert body["refresh_in"] == 100
    assert body["expires_in"] == 600
