"""The daemon's Graph client against the emulator over HTTPS: the blueprint's
own token (MSAL client credentials through the idp engine) creates, lists and
deletes its agent identities; Graph's refusals become one line with the code,
the request id and a hint, and never carry the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emulator_config import secret_file, write_emulator_config
from emulator_harness import Emulator, start_emulator

from agentid_daemon.config.loader import load_config
from agentid_daemon.core.errors import InvalidRequest
from agentid_daemon.idp.engine import Engine
from agentid_daemon.provision import graph as G
from agentid_daemon.provision.blueprint import blueprint_graph_token, blueprint_target

ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def emu(
    tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path
) -> Iterator[Emulator]:
    emulator = start_emulator(tmp_path_factory.mktemp("prov"), key_template=emulator_key_template)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine()
    try:
        yield eng
    finally:
        eng.close()


def _setup(emu: Emulator, tmp_path: Path, engine: Engine) -> tuple[G.GraphClient, str, str]:
    secret = secret_file(emu, tmp_path / "bp.secret")
    cfg = write_emulator_config(tmp_path / "config.toml", emu.info, {"secret_file": str(secret)})
    text = cfg.read_text().replace(
        "[defaults]\n", f'[defaults]\ngraph_endpoint = "{emu.info["graph_endpoint"]}"\n'
    )
    cfg.write_text(text)
    config = load_config(cfg, environ={})
    target = blueprint_target(config, "app")
    assert target.graph_endpoint == emu.info["graph_endpoint"]
    assert target.scope == "https://graph.microsoft.com/.default"
    token = blueprint_graph_token(engine, target)
    client = G.GraphClient(
        engine.provider_session(target.blueprint.ca_bundle), target.graph_endpoint
    )
    return client, token, target.blueprint.blueprint_app_id


def test_create_list_delete_agent_identity(emu: Emulator, tmp_path: Path, engine: Engine) -> None:
    client, token, blueprint = _setup(emu, tmp_path, engine)
    created = client.call(
        G.create_agent_identity_request(blueprint, "made by the daemon", (emu.user_upn,)),
        token,
        what="create an agent identity",
    )
    assert created is not None and created["agentIdentityBlueprintId"] == blueprint
    listed = client.list_all(G.list_agent_identities_request(blueprint), token, what="list")
    assert created["appId"] in {a["appId"] for a in listed}
    assert client.call(G.delete_service_principal_request(created["id"]), token, what="d") is None
    listed = client.list_all(G.list_agent_identities_request(blueprint), token, what="list")
    assert created["appId"] not in {a["appId"] for a in listed}


def test_another_blueprints_agent_is_refused_in_one_line(
    emu: Emulator, tmp_path: Path, engine: Engine
) -> None:
    client, token, _ = _setup(emu, tmp_path, engine)
    other = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(G.GraphRequestError) as caught:
        client.call(
            G.create_agent_identity_request(other, "x", (emu.user_upn,)),
            token,
            what="create an agent identity",
        )
    err = caught.value
    assert err.graph_code == "Authorization_RequestDenied"
    assert err.status == 403 and err.request_id
    assert "\n" not in err.description and err.request_id in err.description
    assert "CreateAsManager" in (err.hint or "")
    assert token not in err.description and err.http_status == 502


def test_unknown_sponsor_carries_graphs_reason(
    emu: Emulator, tmp_path: Path, engine: Engine
) -> None:
    client, token, blueprint = _setup(emu, tmp_path, engine)
    with pytest.raises(G.GraphRequestError) as caught:
        client.call(
            G.create_agent_identity_request(blueprint, "x", ("nobody@example.invalid",)),
            token,
            what="create an agent identity",
        )
    assert caught.value.graph_code == "Request_ResourceNotFound"
    assert "does not exist" in caught.value.description


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: G.create_agent_identity_request("not-a-guid", "n", ("u@x.com",)), "GUID"),
        (lambda: G.create_agent_identity_request(ZERO, "n" * 257, ("u@x.com",)), "at most 256"),
        (lambda: G.create_agent_identity_request(ZERO, "n", ()), "sponsor"),
        (lambda: G.create_agent_user_request("bad", "u@x.com"), "GUID"),
        (lambda: G.create_agent_user_request(ZERO, "nodomain"), "alias@domain"),
    ],
)
def test_bad_input_is_refused_before_graph(build: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        build()  # type: ignore[operator]


def test_request_builders_match_the_docs() -> None:
    oid = ZERO
    req = G.create_agent_user_request(oid, "bot@contoso.com", "Bot")
    assert req.method == "POST" and req.path == "/users"
    assert req.body == {
        "@odata.type": "microsoft.graph.agentUser",
        "displayName": "Bot",
        "userPrincipalName": "bot@contoso.com",
        "mailNickname": "bot",
        "accountEnabled": True,
        "identityParentId": oid,
    }
    bp = G.create_blueprint_request("BP", sponsors=(oid,))
    assert (
        bp.body is not None and bp.body["@odata.type"] == "Microsoft.Graph.AgentIdentityBlueprint"
    )
    assert G.create_blueprint_principal_request(oid).path == (
        "/serviceprincipals/graph.agentIdentityBlueprintPrincipal"
    )
    assert G.add_password_request(oid, "s").path == f"/applications/{oid}/addPassword"
    assert G.graph_resource("https://login.microsoftonline.us") == "https://graph.microsoft.us"


def test_a_missing_permission_is_named(emu: Emulator, tmp_path: Path, engine: Engine) -> None:
    """A new blueprint holds only AgentIdentity.CreateAsManager: creating an agent user
    for its agent is refused, and the error names the permissions that would do."""
    from emulator_graph_helpers import admin_client

    admin = admin_client(emu)
    blueprint = admin.create_blueprint("Fresh blueprint")
    secret = admin.call("POST", f"/applications/{blueprint['id']}/addPassword", {}).json()
    admin.create_principal(blueprint["appId"])
    secret_path = secret_file(emu, tmp_path / "fresh.secret", secret["secretText"])
    cfg = write_emulator_config(
        tmp_path / "config.toml",
        emu.info,
        {"secret_file": str(secret_path)},
        profiles={
            "fresh": {
                "blueprint_app_id": blueprint["appId"],
                "blueprint_credential": {"secret_file": str(secret_path)},
            }
        },
        default_profile=None,
    )
    cfg.write_text(
        cfg.read_text().replace(
            "[defaults]\n", f'[defaults]\ngraph_endpoint = "{emu.info["graph_endpoint"]}"\n'
        )
    )
    target = blueprint_target(load_config(cfg, environ={}), "fresh")
    assert "agent_identity_app_id" not in target.merged  # a blueprint-only profile will do
    token = blueprint_graph_token(engine, target)
    client = G.GraphClient(engine.provider_session(emu.ca_bundle), target.graph_endpoint)
    agent = client.call(
        G.create_agent_identity_request(blueprint["appId"], "its agent", (emu.user_upn,)),
        token,
        what="create an agent identity",
    )
    assert agent is not None
    domain = emu.user_upn.rpartition("@")[2]
    with pytest.raises(G.GraphRequestError) as caught:
        client.call(
            G.create_agent_user_request(agent["id"], f"fresh-user@{domain}"),
            token,
            what="create the agent user",
        )
    assert caught.value.graph_code == "Authorization_RequestDenied"
    assert "AgentIdUser.ReadWrite.IdentityParentedBy" in caught.value.description
    assert "permission" in (caught.value.hint or "")


def test_the_clients_copies_match_the_daemons() -> None:
    """The stdlib-only client checks input with copies of the daemon's rules."""
    from agentid_client import agentcmd

    assert agentcmd.MAX_DISPLAY_NAME == G.MAX_DISPLAY_NAME
    assert agentcmd._GUID.pattern == G._GUID.pattern
    assert agentcmd._UPN.pattern == G._UPN.pattern


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://graph.microsoft.com", "https://graph.microsoft.com"),
        ("https://127.0.0.1:8443/graph/", "https://127.0.0.1:8443/graph"),
        ("https://Graph.Microsoft.US", "https://graph.microsoft.us"),
    ],
)
def test_graph_endpoint_setting(given: str, expected: str) -> None:
    from agentid_daemon.config.fields import graph_endpoint

    assert graph_endpoint(given) == expected


@pytest.mark.parametrize("bad", ["http://graph.microsoft.com", "https://x/?q=1", "graph", 3])
def test_graph_endpoint_setting_refuses(bad: object) -> None:
    from agentid_daemon.config.fields import graph_endpoint

    with pytest.raises(ValueError):
        graph_endpoint(bad)
