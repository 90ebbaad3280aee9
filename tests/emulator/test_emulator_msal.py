"""MSAL against the emulator over real HTTPS: the five legs and the claims they carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from emulator_msal_helpers import (
    GRAPH_DEFAULT,
    TX_SCOPE,
    PinnedSession,
    agent_app,
    app,
    blueprint_app,
    t1,
    t2,
)

from agentid_emulator.jwt_tokens import TOKEN_EXCHANGE_APP_ID, fmi_subject

pytestmark = pytest.mark.timeout(60)


def verified(emu: Any, token: str) -> dict[str, Any]:
    """Verify a token against the emulator's published JWKS, as a resource would."""
    session = PinnedSession(emu.ca_bundle)
    config = session.get(f"{emu.authority}/v2.0/.well-known/openid-configuration").json()
    jwks = jwt.PyJWKSet.from_dict(session.get(config["jwks_uri"]).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], options={"verify_aud": False}, issuer=config["issuer"]
    )
    assert claims["iss"] == f"{emu.authority}/v2.0"
    assert claims["tid"] == emu.tenant_id
    assert claims["ver"] == "2.0"
    assert claims["uti"]
    assert claims["iat"] <= claims["nbf"] < claims["exp"]
    return dict(claims)


def test_discovery_document_is_what_msal_needs(emulator: Any) -> None:
    session = PinnedSession(emulator.ca_bundle)
    config = session.get(f"{emulator.authority}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == emulator.token_endpoint
    assert config["issuer"] == f"{emulator.authority}/v2.0"
    assert config["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")
    assert config["jwks_uri"] == f"{emulator.authority}/discovery/v2.0/keys"


def test_t1_with_secret(emulator: Any) -> None:
    claims = verified(emulator, t1(emulator))
    assert claims["aud"] == TOKEN_EXCHANGE_APP_ID
    assert claims["azp"] == emulator.blueprint_app_id
    assert claims["idtyp"] == "app"
    assert claims["sub"] == fmi_subject(
        emulator.tenant_id, emulator.blueprint_app_id, emulator.agent_identity_app_id
    )


def test_t1_response_shape(emulator: Any) -> None:
    session = PinnedSession(emulator.ca_bundle)
    blueprint_app(emulator, session).acquire_token_for_client(
        [TX_SCOPE], fmi_path=emulator.agent_identity_app_id
    )
    assert session.last is not None
    assert session.last.status_code == 200
    body = session.last.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3600
    assert "refresh_in" not in body  # Entra adds it only for lifetimes >= 2h


def test_t1_with_certificate(emulator: Any) -> None:
    pem = Path(emulator.info["blueprint_certificate_file"]).read_text()
    key_part = pem[: pem.index("-----BEGIN CERTIFICATE-----")]
    cert_part = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    for credential in ({"private_key": key_part, "public_certificate": cert_part},):
        bp = app(emulator, emulator.blueprint_app_id, credential)
        result = bp.acquire_token_for_client([TX_SCOPE], fmi_path=emulator.agent_identity_app_id)
        assert "access_token" in result, result
        assert verified(emulator, result["access_token"])["azpacr"] == "2"


def test_t1_with_certificate_sha1_thumbprint(emulator: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = Path(emulator.info["blueprint_certificate_file"]).read_text()
    cert_part = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    thumb = x509.load_pem_x509_certificate(cert_part.encode()).fingerprint(hashes.SHA1()).hex()
    bp = app(
        emulator,
        emulator.blueprint_app_id,
        {"private_key": pem[: pem.index("-----BEGIN CERTIFICATE-----")], "thumbprint": thumb},
    )
    result = bp.acquire_token_for_client([TX_SCOPE], fmi_path=emulator.agent_identity_app_id)
    assert "access_token" in result, result


def test_t1_with_federated_assertion(emulator: Any) -> None:
    token = Path(emulator.info["blueprint_federated_token_file"]).read_text()
    bp = app(emulator, emulator.blueprint_app_id, {"client_assertion": lambda: token})
    result = bp.acquire_token_for_client([TX_SCOPE], fmi_path=emulator.agent_identity_app_id)
    assert "access_token" in result, result


def test_autonomous_app(emulator: Any) -> None:
    result = agent_app(emulator, t1(emulator)).acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result
    claims = verified(emulator, result["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["idtyp"] == "app"
    assert claims["azp"] == claims["oid"] == emulator.agent_identity_app_id
    assert claims["roles"] == ["User.Read.All"]
    assert claims["xms_par_app_azp"] == emulator.blueprint_app_id


def test_t2(emulator: Any) -> None:
    claims = verified(emulator, t2(emulator, t1(emulator)))
    assert claims["aud"] == TOKEN_EXCHANGE_APP_ID
    agent = emulator.agent_identity_app_id
    assert claims["azp"] == claims["oid"] == claims["sub"] == agent
    assert claims["xms_par_app_azp"] == emulator.blueprint_app_id


def test_obo(emulator: Any) -> None:
    user_token = emulator.user_token(emulator.user_upn, emulator.blueprint_app_id)
    result = agent_app(emulator, t1(emulator)).acquire_token_on_behalf_of(user_token, ["User.Read"])
    assert "access_token" in result, result
    claims = verified(emulator, result["access_token"])
    assert claims["idtyp"] == "user"
    assert claims["upn"] == emulator.user_upn
    assert claims["oid"] == emulator.info["user_object_id"]
    assert claims["scp"] == "User.Read"
    assert claims["aud"] == "https://graph.microsoft.com"


def test_obo_accepts_the_blueprint_identifier_uri(emulator: Any) -> None:
    user_token = emulator.user_token(emulator.user_upn, f"api://{emulator.blueprint_app_id}")
    result = agent_app(emulator, t1(emulator)).acquire_token_on_behalf_of(
        user_token, [GRAPH_DEFAULT]
    )
    assert "access_token" in result, result


def test_obo_with_the_default_user_token(emulator: Any) -> None:
    # /_emulator/users/token defaults to the blueprint, with scp = access_agent.
    user_token = emulator.user_token(emulator.user_upn)
    claims = verified(emulator, user_token)
    assert claims["aud"] == emulator.blueprint_app_id
    assert claims["scp"] == "access_agent"
    result = agent_app(emulator, t1(emulator)).acquire_token_on_behalf_of(user_token, ["User.Read"])
    assert "access_token" in result, result


def test_blueprint_own_token_without_fmi_path(emulator: Any) -> None:
    # create-delete-agent-identities.md: the blueprint's own Graph token (to create agents).
    result = blueprint_app(emulator).acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result
    claims = verified(emulator, result["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["idtyp"] == "app"
    assert claims["azp"] == claims["oid"] == emulator.blueprint_app_id
    assert "AgentIdentity.CreateAsManager" in claims["roles"]


@pytest.mark.parametrize("by", ["username", "user_object_id"])
def test_user_fic(emulator: Any, by: str) -> None:
    first = t1(emulator)
    second = t2(emulator, first)
    who = (
        {"username": emulator.agent_user_upn}
        if by == "username"
        else {"user_object_id": emulator.agent_user_object_id}
    )
    result = agent_app(emulator, first).acquire_token_by_user_federated_identity_credential(
        ["https://graph.microsoft.com/User.Read", "https://graph.microsoft.com/Mail.Read"],
        assertion=second,
        **who,
    )
    assert "access_token" in result, result
    claims = verified(emulator, result["access_token"])
    assert claims["idtyp"] == "user"
    assert claims["upn"] == emulator.agent_user_upn
    assert claims["oid"] == emulator.agent_user_object_id
    assert sorted(claims["scp"].split()) == ["Mail.Read", "User.Read"]


def test_stats_count_legs_and_clients(fresh_emulator: Any) -> None:
    emu = fresh_emulator
    first = t1(emu)
    second = t2(emu, first)
    agent_app(emu, first).acquire_token_for_client([GRAPH_DEFAULT])
    agent_app(emu, first).acquire_token_by_user_federated_identity_credential(
        ["User.Read"], assertion=second, username=emu.agent_user_upn
    )
    obo = agent_app(emu, first).acquire_token_on_behalf_of(
        emu.user_token(emu.user_upn, emu.blueprint_app_id), ["User.Read"]
    )
    # MSAL asked for offline_access: the refresh-token grant, T1 as the assertion.
    refreshed = agent_app(emu, first).acquire_token_by_refresh_token(
        obo["refresh_token"], ["Mail.Read"]
    )
    assert "access_token" in refreshed
    assert refreshed["refresh_token"] != obo["refresh_token"]
    blueprint_app(emu, secret="wrong").acquire_token_for_client(
        [TX_SCOPE], fmi_path=emu.agent_identity_app_id
    )
    blueprint_app(emu).acquire_token_for_client([GRAPH_DEFAULT])
    stats = emu.stats()["token_requests"]
    assert stats["by_leg"] == {
        "t1": 2,
        "autonomous_app": 1,
        "obo": 1,
        "t2": 1,
        "user_fic": 1,
        "blueprint_app": 1,
        "managed_identity": 0,
        "obo_refresh": 1,
    }
    assert stats["total"] == 8
    assert stats["errors"] == 1
    assert stats["by_client"] == {emu.blueprint_app_id: 3, emu.agent_identity_app_id: 5}
    emu.reset()
    assert emu.stats()["token_requests"]["total"] == 0


def test_request_log_has_no_secrets(fresh_emulator: Any) -> None:
    emu = fresh_emulator
    token = t1(emu)
    fed = Path(emu.info["blueprint_federated_token_file"]).read_text()
    app(emu, emu.blueprint_app_id, {"client_assertion": lambda: fed}).acquire_token_for_client(
        [TX_SCOPE], fmi_path=emu.agent_identity_app_id
    )
    blueprint_app(emu, secret="wrong-secret-value").acquire_token_for_client(
        [TX_SCOPE], fmi_path=emu.agent_identity_app_id
    )
    emu.stop()
    log = emu.log_text()
    for secret in (
        emu.blueprint_secret,
        "wrong-secret-value",
        token,
        fed,
        token.split(".")[2],
        fed.split(".")[2],
    ):
        assert secret not in log
    assert '"leg":"t1"' in log
    assert '"aadsts":7000215' in log


def test_requests_ca_bundle_does_not_override_pinned_ca(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    # A plain session's verify= loses to REQUESTS_CA_BUNDLE: the trap.
    plain = requests.Session()
    plain.verify = emulator.ca_bundle
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{emulator.authority}/v2.0/.well-known/openid-configuration", timeout=10)
    # The pinned session keeps trusting the emulator CA, and MSAL works through it.
    assert "access_token" in blueprint_app(emulator).acquire_token_for_client(
        [TX_SCOPE], fmi_path=emulator.agent_identity_app_id
    )


@pytest.mark.parametrize("fresh_emulator", [{"token_lifetime_s": 7200}], indirect=True)
def test_long_lifetime_sends_refresh_in(fresh_emulator: Any) -> None:
    session = PinnedSession(fresh_emulator.ca_bundle)
    blueprint_app(fresh_emulator, session).acquire_token_for_client(
        [TX_SCOPE], fmi_path=fresh_emulator.agent_identity_app_id
    )
    assert session.last is not None
    body = session.last.json()
    assert body["expires_in"] == 7200
    assert body["refresh_in"] == 3600
