"""The IMDS-shaped managed identity endpoint (``--imds-port``): sans-IO, then with
MSAL's real ``ManagedIdentityClient`` over HTTP, and its token as the blueprint's
federated credential for T1 (agent-on-behalf-of-oauth-flow.md, ``TUAMI``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
from emulator_msal_helpers import GRAPH_DEFAULT, TX_SCOPE, PinnedSession, aadsts, agent_app, app
from tooling import SUPPORT

from agentid_emulator import directory as d
from agentid_emulator.certs import new_key
from agentid_emulator.imds import ImdsService, token_audience
from agentid_emulator.jwt_tokens import TOKEN_EXCHANGE_APP_ID, TokenIssuer, fmi_subject
from agentid_emulator.legs import TokenService

pytestmark = pytest.mark.timeout(90)
HOST = "https://127.0.0.1:4443"
TENANT = d.DEMO_TENANT_ID
TOKEN_PATH = "/metadata/identity/oauth2/token"
META = {"Metadata": "true"}
EXCHANGE = "api://AzureADTokenExchange"
SEED = SUPPORT / "emulator_seed_example.toml"
# Variables that would send MSAL to another managed identity source than IMDS.
OTHER_MI_SOURCES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
)


@pytest.fixture(scope="module")
def imds() -> ImdsService:
    issuer = TokenIssuer(HOST, new_key())
    return ImdsService(TokenService(d.demo_directory(), issuer, token_lifetime_s=3600))


def target(**params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"api-version": "2018-02-01", **params}.items())
    return f"{TOKEN_PATH}?{query}"


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# ----------------------------------------------------------------- sans-IO


def test_token_for_the_exchange_audience(imds: ImdsService) -> None:
    now = time.time()
    resp = imds.handle(
        "GET", target(resource=EXCHANGE, client_id=d.DEMO_MI_CLIENT_ID), META, now=now
    )
    assert resp.status == 200
    assert resp.client_id == d.DEMO_MI_CLIENT_ID
    body = resp.body
    # IMDS's fields, numbers as strings (how-to-use-vm-token.md, "Sample response").
    assert set(body) == {
        "access_token",
        "client_id",
        "expires_in",
        "expires_on",
        "ext_expires_in",
        "not_before",
        "resource",
        "token_type",
    }
    assert body["expires_in"] == "3600"
    assert body["expires_on"] == str(int(now) + 3600)
    assert body["resource"] == EXCHANGE
    assert body["token_type"] == "Bearer"
    assert body["client_id"] == d.DEMO_MI_CLIENT_ID
    claims = claims_of(body["access_token"])
    assert claims["aud"] == TOKEN_EXCHANGE_APP_ID  # the app id, not the URI
    assert claims["iss"] == f"{HOST}/{TENANT}/v2.0"
    assert claims["tid"] == TENANT
    assert claims["azp"] == d.DEMO_MI_CLIENT_ID
    assert claims["idtyp"] == "app"
    assert claims["sub"] == claims["oid"] == d.DEMO_MI_OBJECT_ID
    assert claims["xms_mirid"] == d.DEMO_MI_RESOURCE_ID


@pytest.mark.parametrize(
    "selector",
    [
        {},
        {"client_id": d.DEMO_MI_CLIENT_ID.upper()},
        {"object_id": d.DEMO_MI_OBJECT_ID},
        {"msi_res_id": d.DEMO_MI_RESOURCE_ID},
    ],
)
def test_identity_selection(imds: ImdsService, selector: dict[str, str]) -> None:
    resp = imds.handle("GET", target(resource="https://management.azure.com/", **selector), META)
    assert resp.status == 200, resp.body
    assert claims_of(resp.body["access_token"])["oid"] == d.DEMO_MI_OBJECT_ID
    assert claims_of(resp.body["access_token"])["aud"] == "https://management.azure.com/"


@pytest.mark.parametrize(
    "method, path, headers, status, error, words",
    [
        (
            "GET",
            target(resource=EXCHANGE),
            {},
            400,
            "bad_request_102",
            "Required metadata header not specified",
        ),
        (
            "GET",
            target(resource=EXCHANGE),
            {"Metadata": "True"},
            400,
            "bad_request_102",
            "metadata header",
        ),  # "must be specified as true, in all lower case"
        ("GET", f"{TOKEN_PATH}?resource={EXCHANGE}", META, 400, "invalid_request", "api-version"),
        (
            "GET",
            target(resource=EXCHANGE).replace("2018-02-01", "2017-09-01"),
            META,
            400,
            "invalid_request",
            "api-version",
        ),
        ("GET", target(), META, 400, "invalid_request", "audience parameter"),
        (
            "GET",
            target(resource=EXCHANGE) + "&resource=x",
            META,
            400,
            "invalid_request",
            "more than once",
        ),
        (
            "GET",
            target(resource=EXCHANGE, client_id="0badc0de-0000-4000-8000-000000000000"),
            META,
            400,
            "invalid_request",
            "Identity not found",
        ),
        (
            "GET",
            target(resource=EXCHANGE, client_id=d.DEMO_MI_CLIENT_ID, object_id=d.DEMO_MI_OBJECT_ID),
            META,
            400,
            "invalid_request",
            "Only one",
        ),
        ("POST", target(resource=EXCHANGE), META, 405, "invalid_request", "use GET"),
        ("GET", "/metadata/instance?api-version=2021-02-01", META, 404, "not_found", "no route"),
    ],
)
def test_imds_errors(
    imds: ImdsService,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    error: str,
    words: str,
) -> None:
    resp = imds.handle(method, path, headers)
    assert (resp.status, resp.body["error"]) == (status, error)
    assert words in resp.body["error_description"]
    assert "access_token" not in resp.body


def test_several_identities_need_a_selector() -> None:
    directory = d.demo_directory()
    tenant = directory.tenants[TENANT]
    tenant.managed_identities.append(
        d.ManagedIdentity(
            "0f0f0f0f-0000-4000-8000-000000000001",
            "0f0f0f0f-0000-4000-8000-000000000002",
            tenant_id=TENANT,
        )
    )
    service = ImdsService(TokenService(directory, TokenIssuer(HOST, new_key())))
    resp = service.handle("GET", target(resource=EXCHANGE), META)
    assert resp.status == 400
    assert "Multiple user assigned identities" in resp.body["error_description"]
    picked = service.handle(
        "GET", target(resource=EXCHANGE, object_id="0f0f0f0f-0000-4000-8000-000000000002"), META
    )
    assert claims_of(picked.body["access_token"])["azp"] == "0f0f0f0f-0000-4000-8000-000000000001"


def test_token_audience() -> None:
    for resource in (EXCHANGE, EXCHANGE + "/", EXCHANGE + "/.default", EXCHANGE.lower()):
        assert token_audience(resource) == TOKEN_EXCHANGE_APP_ID
    assert token_audience("https://graph.microsoft.com/.default") == "https://graph.microsoft.com"
    assert token_audience("https://vault.azure.net") == "https://vault.azure.net"


# ------------------------------------------------------ MSAL over real HTTP


@pytest.fixture(scope="module")
def imds_emulator(tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path) -> Any:
    from emulator_harness import start_emulator

    emu = start_emulator(
        tmp_path_factory.mktemp("imds-emulator"), key_template=emulator_key_template, imds_port=0
    )
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def pod_identity(imds_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """MSAL's IMDS source, pointed at the emulator by AZURE_POD_IDENTITY_AUTHORITY_HOST."""
    for name in OTHER_MI_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds_emulator.info["imds_endpoint"])
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    imds_emulator.reset()
    return imds_emulator


def mi_client(emu: Any, **identity: str) -> msal.ManagedIdentityClient:
    which = identity or {"client_id": emu.info["managed_identity_client_id"]}
    return msal.ManagedIdentityClient(
        msal.UserAssignedManagedIdentity(**which), http_client=requests.Session(), token_cache=None
    )


def test_ready_file_names_the_endpoint_and_identity(imds_emulator: Any) -> None:
    info = imds_emulator.info
    assert info["imds_endpoint"].startswith("http://127.0.0.1:")
    assert info["managed_identity_client_id"] == d.DEMO_MI_CLIENT_ID
    assert info["managed_identity_object_id"] == d.DEMO_MI_OBJECT_ID
    assert "managed identity endpoint http://127.0.0.1:" in imds_emulator.log_text()


@pytest.mark.parametrize("by", ["client_id", "object_id", "resource_id"])
def test_msal_managed_identity_client(pod_identity: Any, by: str) -> None:
    emu = pod_identity
    ids = {
        "client_id": emu.info["managed_identity_client_id"],
        "object_id": emu.info["managed_identity_object_id"],
        "resource_id": d.DEMO_MI_RESOURCE_ID,
    }
    result = mi_client(emu, **{by: ids[by]}).acquire_token_for_client(resource=EXCHANGE)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 3000
    claims = claims_of(result["access_token"])
    assert claims["aud"] == TOKEN_EXCHANGE_APP_ID
    assert claims["sub"] == emu.info["managed_identity_object_id"]
    stats = emu.stats()["token_requests"]
    assert stats["by_leg"]["managed_identity"] == 1
    assert stats["by_client"] == {emu.info["managed_identity_client_id"]: 1}


def test_unknown_identity_is_msal_error(pod_identity: Any) -> None:
    result = mi_client(
        pod_identity, client_id="0badc0de-0000-4000-8000-000000000000"
    ).acquire_token_for_client(resource=EXCHANGE)
    assert result.get("error") == "invalid_request"
    assert "access_token" not in result
    assert pod_identity.stats()["token_requests"]["errors"] == 1


def test_managed_identity_token_is_the_blueprints_credential(pod_identity: Any) -> None:
    emu = pod_identity
    mi_token = mi_client(emu).acquire_token_for_client(resource=EXCHANGE)["access_token"]
    bp = app(emu, emu.blueprint_app_id, {"client_assertion": lambda: mi_token})
    # T1 (agent-on-behalf-of-oauth-flow.md step 3: client_assertion=TUAMI) ...
    t1 = bp.acquire_token_for_client([TX_SCOPE], fmi_path=emu.agent_identity_app_id)
    assert "access_token" in t1, t1
    t1_claims = claims_of(t1["access_token"])
    assert t1_claims["sub"] == fmi_subject(
        emu.tenant_id, emu.blueprint_app_id, emu.agent_identity_app_id
    )
    assert t1_claims["azpacr"] == "2"  # a federated credential, not a secret
    # ... usable by the agent, and the blueprint's own Graph token (auth-flows.md 2.1.B).
    second = agent_app(emu, t1["access_token"]).acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in second, second
    own = bp.acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in own
    assert claims_of(own["access_token"])["idtyp"] == "app"
    by_leg = emu.stats()["token_requests"]["by_leg"]
    assert (
        by_leg["managed_identity"],
        by_leg["t1"],
        by_leg["autonomous_app"],
        by_leg["blueprint_app"],
    ) == (1, 1, 1, 1)


def test_managed_identity_token_for_another_resource_is_refused(pod_identity: Any) -> None:
    emu = pod_identity
    graph_token = mi_client(emu).acquire_token_for_client(resource="https://graph.microsoft.com")[
        "access_token"
    ]
    s = PinnedSession(emu.ca_bundle)
    bp = app(emu, emu.blueprint_app_id, {"client_assertion": lambda: graph_token}, s)
    result = bp.acquire_token_for_client([TX_SCOPE], fmi_path=emu.agent_identity_app_id)
    assert aadsts(result) == 700212  # no federated credential for that audience


def test_without_metadata_header_400(pod_identity: Any) -> None:
    url = pod_identity.info["imds_endpoint"] + TOKEN_PATH
    params = {"api-version": "2018-02-01", "resource": EXCHANGE}
    bare = requests.get(url, params=params, timeout=10)
    assert bare.status_code == 400
    assert bare.json() == {
        "error": "bad_request_102",
        "error_description": "Required metadata header not specified",
    }
    assert bare.headers["Server"].startswith("IMDS/")
    ok = requests.get(url, params=params, headers=META, timeout=10)
    assert ok.status_code == 200
    assert set(ok.json()) >= {"access_token", "expires_on"}
    assert requests.post(url, params=params, headers=META, timeout=10).status_code == 405
    # The log names the path and the identity, never the query or the token.
    log = pod_identity.log_text()
    assert ok.json()["access_token"] not in log
    lines = [json.loads(line) for line in log.splitlines() if '"managed_identity"' in line]
    assert lines
    assert all(line["path"] == TOKEN_PATH for line in lines)


def test_seeded_managed_identity_and_credential(
    tmp_path: Path, emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(seed=SEED, imds_port=0)
    for name in OTHER_MI_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emu.info["imds_endpoint"])
    assert emu.info["managed_identity_object_id"] == "88888888-8888-4888-8888-888888888888"
    # No selector: the only identity of this "VM" is used (MSAL's system-assigned call).
    result = msal.ManagedIdentityClient(
        msal.SystemAssignedManagedIdentity(), http_client=requests.Session()
    ).acquire_token_for_client(resource=EXCHANGE)
    assert "access_token" in result, result
    mi_token = result["access_token"]
    bp = app(emu, emu.blueprint_app_id, {"client_assertion": lambda: mi_token})
    t1 = bp.acquire_token_for_client([TX_SCOPE], fmi_path=emu.agent_identity_app_id)
    assert "access_token" in t1, t1
    own = claims_of(bp.acquire_token_for_client([GRAPH_DEFAULT])["access_token"])
    assert own["roles"] == ["AgentIdentity.CreateAsManager"]
