"""The emulator's Microsoft Graph beta: bearer checks, agent identity
provisioning and its validation rules, over real HTTPS (requests and MSAL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from emulator_graph_helpers import (
    GRAPH,
    GraphClient,
    admin_client,
    agent_body,
    blueprint_client,
    graph_error,
)
from emulator_harness import Emulator, start_emulator
from emulator_msal_helpers import (
    GRAPH_DEFAULT,
    TX_SCOPE,
    aadsts,
    agent_app,
    blueprint_app,
    emulator_issuer,
    t1,
)

from agentid_emulator.certs import new_key
from agentid_emulator.jwt_tokens import TokenIssuer


@pytest.fixture(scope="module")
def emu(
    tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path
) -> Iterator[Emulator]:
    """A private demo emulator: these tests add objects to its directory."""
    emulator = start_emulator(tmp_path_factory.mktemp("graph"), key_template=emulator_key_template)
    try:
        yield emulator
    finally:
        emulator.stop()


def _claims(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_ready_file_names_the_graph_endpoint(emu: Emulator) -> None:
    assert emu.info["graph_endpoint"] == f"{emu.authority_host}/graph"


def test_blueprint_graph_token_carries_create_as_manager(emu: Emulator) -> None:
    client = blueprint_client(emu)
    assert client.token is not None
    claims = _claims(client.token)
    assert claims["aud"] == GRAPH
    assert "AgentIdentity.CreateAsManager" in claims["roles"]  # type: ignore[operator]


def test_blueprint_creates_lists_uses_and_deletes_its_own_agent(emu: Emulator) -> None:
    client = blueprint_client(emu)
    resp = client.create_agent(emu.blueprint_app_id, emu.user_upn, "Mine")  # sponsor by UPN
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    assert agent["@odata.type"] == "#microsoft.graph.agentIdentity"
    assert agent["agentIdentityBlueprintId"] == emu.blueprint_app_id
    assert agent["appId"] == agent["id"]

    listed = client.call(
        "GET",
        "/serviceprincipals/Microsoft.Graph.AgentIdentity",
        params={"$filter": f"agentIdentityBlueprintId eq '{emu.blueprint_app_id}'"},
    )
    assert listed.status_code == 200, listed.text
    assert agent["id"] in {a["id"] for a in listed.json()["value"]}

    # The new agent joined the token endpoint's directory (no replication delay here).
    t1_result = blueprint_app(emu).acquire_token_for_client([TX_SCOPE], fmi_path=agent["appId"])
    assert "access_token" in t1_result, t1_result
    t2 = agent_app(emu, t1_result["access_token"], agent_id=agent["appId"])
    assert "access_token" in t2.acquire_token_for_client([TX_SCOPE])

    deleted = client.call("DELETE", f"/serviceprincipals/{agent['id']}")
    assert deleted.status_code == 204
    assert deleted.headers["request-id"]
    assert client.call("GET", f"/serviceprincipals/{agent['id']}").status_code == 404
    after = blueprint_app(emu).acquire_token_for_client([TX_SCOPE], fmi_path=agent["appId"])
    assert aadsts(after) == 700016


def test_blueprint_may_not_create_agents_of_another_blueprint(emu: Emulator) -> None:
    admin = admin_client(emu)
    other = admin.create_blueprint("Someone else's")
    admin.create_principal(other["appId"])
    resp = blueprint_client(emu).create_agent(other["appId"], emu.user_upn)
    assert resp.status_code == 403, resp.text
    error = graph_error(resp)
    assert error["code"] == "Authorization_RequestDenied"
    assert other["appId"] in error["message"]
    # The administrator (AgentIdentity.Create.All) may.
    assert admin.create_agent(other["appId"], emu.user_upn).status_code == 201


def test_missing_role_is_named(emu: Emulator) -> None:
    """An agent's own app-only Graph token (roles User.Read.All) cannot provision."""
    autonomous = agent_app(emu, t1(emu)).acquire_token_for_client([GRAPH_DEFAULT])
    client = GraphClient(emu, autonomous["access_token"])
    resp = client.create_agent(emu.blueprint_app_id, emu.user_upn)
    assert resp.status_code == 403
    error = graph_error(resp)
    assert "AgentIdentity.CreateAsManager" in error["message"]
    assert "roles" in error["message"]


def test_missing_delegated_scope_is_named(emu: Emulator) -> None:
    reader = admin_client(emu, scope=f"{GRAPH}/User.Read")
    resp = reader.create_agent(emu.blueprint_app_id, emu.user_upn)
    assert resp.status_code == 403
    assert "AgentIdentity.Create.All" in graph_error(resp)["message"]
    blueprint_resp = reader.call(
        "POST",
        "/applications",
        {"@odata.type": "Microsoft.Graph.AgentIdentityBlueprint", "displayName": "x"},
    )
    assert blueprint_resp.status_code == 403
    assert "AgentIdentityBlueprint.Create" in graph_error(blueprint_resp)["message"]


def _forged(emu: Emulator, issuer: TokenIssuer, **claims: object) -> str:
    body: dict[str, object] = {
        "aud": GRAPH,
        "appid": emu.blueprint_app_id,
        "roles": ["AgentIdentity.CreateAsManager"],
    }
    body.update(claims)
    lifetime = int(str(body.pop("lifetime", 600)))
    return issuer.mint(emu.tenant_id, body, lifetime_s=lifetime)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("absent", "Access token is empty"),
        ("expired", "expired"),
        ("foreign_key", "Invalid signature"),
        ("wrong_audience", "Invalid audience"),
        ("wrong_issuer", "Invalid issuer"),
        ("no_permissions", "scp or roles"),
    ],
)
def test_bearer_checks(emu: Emulator, case: str, message: str) -> None:
    ours = emulator_issuer(emu)
    tokens: dict[str, str | None] = {
        "absent": None,
        "expired": ours.mint(
            emu.tenant_id,
            {"aud": GRAPH, "roles": ["AgentIdentity.CreateAsManager"]},
            lifetime_s=60,
            now=time.time() - 3600,
        ),
        "foreign_key": _forged(emu, TokenIssuer(emu.authority_host, new_key())),
        "wrong_audience": emu.user_token(emu.user_upn),  # a token for the blueprint
        "wrong_issuer": _forged(emu, ours, iss="https://sts.example/evil/v2.0"),
        "no_permissions": _forged(emu, ours, roles=None),
    }
    resp = GraphClient(emu, tokens[case]).create_agent(emu.blueprint_app_id, emu.user_upn)
    assert resp.status_code == 401, resp.text
    error = graph_error(resp)
    assert error["code"] == "InvalidAuthenticationToken"
    assert message in error["message"]
    assert "invalid_token" in resp.headers["WWW-Authenticate"]


def test_graph_app_id_is_an_accepted_audience(emu: Emulator) -> None:
    token = _forged(emu, emulator_issuer(emu), aud="00000003-0000-0000-c000-000000000000")
    resp = GraphClient(emu, token).create_agent(emu.blueprint_app_id, emu.user_upn)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"sponsors@odata.bind": [f"{GRAPH}/v1.0/users/{uuid.uuid4()}"]}, 400, "does not exist"),
        (
            {"sponsors@odata.bind": [f"{GRAPH}/v1.0/users/nobody@contoso.example"]},
            400,
            "does not exist",
        ),
        ({"sponsors@odata.bind": []}, 400, "sponsors@odata.bind"),
        ({"sponsors@odata.bind": None}, 400, "sponsors@odata.bind"),
        ({"agentIdentityBlueprintId": "not-a-guid"}, 400, "GUID"),
        ({"displayName": "x" * 257}, 400, "256"),
        ({"displayName": ""}, 400, "displayName"),
    ],
)
def test_agent_identity_validation(
    emu: Emulator, change: dict[str, object], status: int, needle: str
) -> None:
    body = {**agent_body(emu.blueprint_app_id, emu.user_upn), **change}
    body = {k: v for k, v in body.items() if v is not None}
    resp = blueprint_client(emu).call(
        "POST", "/serviceprincipals/Microsoft.Graph.AgentIdentity", body
    )
    assert resp.status_code == status, resp.text
    assert needle in graph_error(resp)["message"]


def test_sponsor_must_be_a_human_user(emu: Emulator) -> None:
    resp = blueprint_client(emu).create_agent(emu.blueprint_app_id, emu.agent_user_upn)
    assert resp.status_code == 400
    assert "does not exist" in graph_error(resp)["message"]


def test_odata_version_header_is_required(emu: Emulator) -> None:
    resp = blueprint_client(emu).call(
        "POST",
        "/serviceprincipals/Microsoft.Graph.AgentIdentity",
        agent_body(emu.blueprint_app_id, emu.user_upn),
        headers={"OData-Version": ""},
    )
    assert resp.status_code == 400
    assert "OData-Version" in graph_error(resp)["message"]


def test_errors_echo_client_request_id(emu: Emulator) -> None:
    correlation = str(uuid.uuid4())
    resp = blueprint_client(emu).call(
        "DELETE", "/serviceprincipals/not-a-guid", headers={"client-request-id": correlation}
    )
    assert resp.status_code == 400
    error = graph_error(resp)
    assert error["innerError"]["client-request-id"] == correlation
    assert resp.headers["client-request-id"] == correlation


def test_graph_requests_are_counted(emu: Emulator) -> None:
    emu.reset()
    client = blueprint_client(emu)
    client.call("GET", "/serviceprincipals/Microsoft.Graph.AgentIdentity")
    client.call("DELETE", "/serviceprincipals/not-a-guid")
    stats = emu.stats()
    assert stats["graph_requests"] == {"total": 2, "errors": 1}
    assert stats["token_requests"]["by_leg"]["blueprint_app"] == 1  # existing keys kept


def test_agent_user_rules(emu: Emulator) -> None:
    admin = admin_client(emu)
    agent = admin.create_agent(emu.blueprint_app_id, emu.user_upn, "With a user").json()
    user = {
        "@odata.type": "microsoft.graph.agentUser",
        "displayName": "Agent user",
        "mailNickname": "agentuser2",
        "userPrincipalName": "agentuser2@contoso.example",
        "identityParentId": agent["id"],
        "accountEnabled": True,
    }
    foreign = admin.call("POST", "/users", {**user, "userPrincipalName": "a@evil.example"})
    assert foreign.status_code == 400
    assert "domain" in graph_error(foreign)["message"]
    bad_parent = admin.call("POST", "/users", {**user, "identityParentId": "42"})
    assert bad_parent.status_code == 400
    assert "GUID" in graph_error(bad_parent)["message"]
    taken = admin.call("POST", "/users", {**user, "userPrincipalName": emu.user_upn})
    assert taken.status_code == 400
    assert "already exists" in graph_error(taken)["message"]

    with_password = admin.call(
        "POST", "/users", {**user, "passwordProfile": {"password": "not-allowed-1!"}}
    )
    assert with_password.status_code == 400
    assert "password" in graph_error(with_password)["message"]
    created = admin.call("POST", "/users", user)
    assert created.status_code == 201, created.text
    assert created.json()["identityParentId"] == agent["id"]
    second = admin.call("POST", "/users", {**user, "userPrincipalName": "other@contoso.example"})
    assert second.status_code == 400  # one agent user per agent identity
    # The agent user joined the directory (no replication delay here).
    token = emu.user_token(user["userPrincipalName"])
    assert _claims(token)["upn"] == user["userPrincipalName"]
    assert admin.call("DELETE", f"/users/{created.json()['id']}").status_code == 204
    assert admin.call("DELETE", f"/users/{emu.info['user_object_id']}").status_code == 400


def test_directory_access_as_user_blocks_agent_id_writes(emu: Emulator) -> None:
    """Graph ignores Agent ID permissions of a client that also holds
    Directory.AccessAsUser.All (the Azure CLI's grant): 403."""
    broad = admin_client(
        emu, scope=f"{GRAPH}/AgentIdentity.Create.All {GRAPH}/Directory.AccessAsUser.All"
    )
    resp = broad.create_agent(emu.blueprint_app_id, emu.user_upn)
    assert resp.status_code == 403
    assert "Directory.AccessAsUser.All" in graph_error(resp)["message"]


def test_a_blueprint_lists_only_its_own_agents(emu: Emulator) -> None:
    admin = admin_client(emu)
    other = admin.create_blueprint("Lister's neighbour")
    admin.create_principal(other["appId"])
    foreign = admin.create_agent(other["appId"], emu.user_upn).json()
    listed = blueprint_client(emu).call("GET", "/serviceprincipals/Microsoft.Graph.AgentIdentity")
    ids = {a["id"] for a in listed.json()["value"]}
    assert emu.agent_identity_app_id in ids
    assert foreign["id"] not in ids
    hidden = blueprint_client(emu).call("GET", f"/serviceprincipals/{foreign['id']}")
    assert hidden.status_code == 404
    refused = blueprint_client(emu).call("DELETE", f"/serviceprincipals/{foreign['id']}")
    assert refused.status_code == 403
    bad_filter = blueprint_client(emu).call(
        "GET",
        "/serviceprincipals/Microsoft.Graph.AgentIdentity",
        params={"$filter": "agentIdentityBlueprintId eq 'zzz'"},
    )
    assert bad_filter.status_code == 400


def _agent_user_body(upn: str, parent_id: str) -> dict[str, object]:
    return {
        "@odata.type": "microsoft.graph.agentUser",
        "displayName": "Agent user",
        "mailNickname": upn.partition("@")[0],
        "userPrincipalName": upn,
        "identityParentId": parent_id,
        "accountEnabled": True,
    }


def test_identity_parented_by_covers_the_blueprints_own_agents_only(emu: Emulator) -> None:
    """The demo blueprint holds AgentIdUser.ReadWrite.IdentityParentedBy (as recorded)."""
    admin = admin_client(emu)
    bp = blueprint_client(emu)
    own = bp.create_agent(emu.blueprint_app_id, emu.user_upn, "Own").json()
    created = bp.call("POST", "/users", _agent_user_body("own-user@contoso.example", own["id"]))
    assert created.status_code == 201, created.text
    other = admin.create_blueprint("Neighbour with agents")
    admin.create_principal(other["appId"])
    foreign = admin.create_agent(other["appId"], emu.user_upn).json()
    refused = bp.call("POST", "/users", _agent_user_body("foreign@contoso.example", foreign["id"]))
    assert refused.status_code == 403
    assert "IdentityParentedBy" in graph_error(refused)["message"]
    assert bp.call("DELETE", f"/users/{created.json()['id']}").status_code == 204


def test_blueprint_creation_as_create_blueprint_md_shows_it(emu: Emulator) -> None:
    """The REST tab (``@odata.type``, sponsors and owners) and the PowerShell tab
    (type cast in the URL); the principal with AgentIdentityBlueprint.Create alone."""
    creator = admin_client(emu, scope=f"{GRAPH}/AgentIdentityBlueprint.Create")
    sponsor = f"{GRAPH}/v1.0/users/{emu.info['user_object_id']}"
    rest_tab = creator.call(
        "POST",
        "/applications",
        {
            "@odata.type": "Microsoft.Graph.AgentIdentityBlueprint",
            "displayName": "REST tab",
            "sponsors@odata.bind": [sponsor],
            "owners@odata.bind": [sponsor],
        },
    )
    assert rest_tab.status_code == 201, rest_tab.text
    assert rest_tab.json()["@odata.type"] == "#microsoft.graph.agentIdentityBlueprint"
    cast = creator.call(
        "POST", "/applications/graph.agentIdentityBlueprint", {"displayName": "PowerShell tab"}
    )
    assert cast.status_code == 201, cast.text
    assert creator.create_principal(cast.json()["appId"])["appId"] == cast.json()["appId"]

    no_owner = creator.call(
        "POST",
        "/applications/graph.agentIdentityBlueprint",
        {"displayName": "x", "owners@odata.bind": [f"{GRAPH}/v1.0/users/{uuid.uuid4()}"]},
    )
    assert no_owner.status_code == 400
    assert "owner" in graph_error(no_owner)["message"]
    plain_app = creator.call("POST", "/applications", {"displayName": "not a blueprint"})
    assert plain_app.status_code == 400


def test_add_password_end_date(emu: Emulator) -> None:
    admin = admin_client(emu)
    blueprint = admin.create_blueprint("Secrets")
    path = f"/applications/{blueprint['id']}/addPassword"
    dated = admin.call(
        "POST",
        path,
        {"passwordCredential": {"displayName": "s", "endDateTime": "2099-08-05T23:59:59Z"}},
    )
    assert dated.status_code == 200, dated.text
    assert dated.json()["endDateTime"] == "2099-08-05T23:59:59Z"
    assert dated.json()["displayName"] == "s"
    past = admin.call("POST", path, {"passwordCredential": {"endDateTime": "2001-01-01T00:00:00Z"}})
    assert past.status_code == 400
    unknown = admin.call("POST", f"/applications/{uuid.uuid4()}/addPassword", {})
    assert unknown.status_code == 404
    assert graph_error(unknown)["code"] == "Request_ResourceNotFound"
