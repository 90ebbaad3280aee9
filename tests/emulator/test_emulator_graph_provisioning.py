"""Provisioning end to end through the emulator's Graph: an administrator
creates a blueprint, its secret and principal; the blueprint creates agents
(at most 250) and the token endpoint learns of each only after the
replication delay (AADSTS700016 / AADSTS50034 until then)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from emulator_graph_helpers import admin_client, blueprint_client, eventually, graph_error
from emulator_harness import Emulator
from emulator_msal_helpers import GRAPH_DEFAULT, TX_SCOPE, PinnedSession, aadsts, app

DELAY_S = 1.5


def test_created_objects_reach_the_token_endpoint_after_the_replication_delay(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emu = emulator_factory(replication_delay_s=DELAY_S)
    admin = admin_client(emu)
    blueprint = admin.create_blueprint("Delayed")
    secret_resp = admin.call("POST", f"/applications/{blueprint['id']}/addPassword", {})
    assert secret_resp.status_code == 200, secret_resp.text
    secret = secret_resp.json()["secretText"]
    admin.create_principal(blueprint["appId"])
    created_at = time.monotonic()

    msal_app = app(emu, blueprint["appId"], secret)
    early = msal_app.acquire_token_for_client([GRAPH_DEFAULT])
    assert aadsts(early) == 700016, early
    assert time.monotonic() - created_at < DELAY_S  # the refusal came before the delay ended

    def blueprint_token_works() -> bool:
        return "access_token" in app(emu, blueprint["appId"], secret).acquire_token_for_client(
            [GRAPH_DEFAULT]
        )

    assert eventually(blueprint_token_works)
    assert time.monotonic() - created_at >= DELAY_S

    # The new blueprint's own Graph token creates an agent of its own...
    bp_graph = blueprint_client(emu, blueprint["appId"], secret)
    resp = bp_graph.create_agent(blueprint["appId"], emu.user_upn, "Delayed agent")
    assert resp.status_code == 201, resp.text
    agent_id = resp.json()["appId"]
    # ...visible in Graph at once, to the token endpoint only later.
    t1_early = app(emu, blueprint["appId"], secret).acquire_token_for_client(
        [TX_SCOPE], fmi_path=agent_id
    )
    assert aadsts(t1_early) == 700016
    assert eventually(
        lambda: (
            "access_token"
            in app(emu, blueprint["appId"], secret).acquire_token_for_client(
                [TX_SCOPE], fmi_path=agent_id
            )
        )
    )

    # An agent user: AADSTS50034 for its UPN until replicated.
    user = admin.call(
        "POST",
        "/users",
        {
            "@odata.type": "microsoft.graph.agentUser",
            "displayName": "Delayed agent user",
            "mailNickname": "delayed",
            "userPrincipalName": "delayed@contoso.example",
            "identityParentId": agent_id,
            "accountEnabled": True,
        },
    )
    assert user.status_code == 201, user.text
    body = {"upn": "delayed@contoso.example"}
    refused = _admin_status(emu, body)
    assert refused[0] == 400 and "AADSTS50034" in refused[1]
    assert eventually(lambda: _admin_status(emu, body)[0] == 200)


def _admin_status(emu: Emulator, body: dict[str, str]) -> tuple[int, str]:
    resp = PinnedSession(emu.ca_bundle).post(
        f"{emu.authority_host}/_emulator/users/token", json=body
    )
    return resp.status_code, resp.text


def test_federated_credential_on_a_new_blueprint(
    emulator_factory: Callable[..., Emulator],
) -> None:
    """A federated credential added through Graph lets the workload token in."""
    emu = emulator_factory()
    admin = admin_client(emu)
    blueprint = admin.create_blueprint("Federated")
    admin.create_principal(blueprint["appId"])
    subject = "system:serviceaccount:agents:new-bot"
    resp = admin.call(
        "POST",
        f"/applications/{blueprint['id']}/federatedIdentityCredentials",
        {
            "name": "k8s",
            "issuer": str(emu.info["workload_issuer"]),
            "subject": subject,
            "audiences": ["api://AzureADTokenExchange"],
        },
    )
    assert resp.status_code == 201, resp.text
    assertion = emu.admin("POST", "/_emulator/federated/token", {"subject": subject})[
        "access_token"
    ]
    federated = app(emu, blueprint["appId"], {"client_assertion": lambda: assertion})
    result = federated.acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result


def test_at_most_250_agent_identities_per_blueprint(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emu = emulator_factory()
    admin = admin_client(emu)
    blueprint = admin.create_blueprint("Crowded")
    admin.create_principal(blueprint["appId"])
    ids = []
    for n in range(250):
        resp = admin.create_agent(blueprint["appId"], emu.user_upn, f"agent {n}")
        assert resp.status_code == 201, (n, resp.text)
        ids.append(resp.json()["id"])
    refused = admin.create_agent(blueprint["appId"], emu.user_upn, "agent 251")
    assert refused.status_code == 400
    error = graph_error(refused)
    assert error["code"] == "Request_QuotaExceeded"
    assert "250" in error["message"]
    # The limit is per blueprint, and a deletion makes room.
    assert admin.create_agent(emu.blueprint_app_id, emu.user_upn).status_code == 201
    assert admin.call("DELETE", f"/serviceprincipals/{ids[0]}").status_code == 204
    assert admin.create_agent(blueprint["appId"], emu.user_upn, "agent 251").status_code == 201


def test_a_blueprint_without_principal_has_no_agents(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emu = emulator_factory()
    admin = admin_client(emu)
    blueprint = admin.create_blueprint("No principal yet")
    resp = admin.create_agent(blueprint["appId"], emu.user_upn)
    assert resp.status_code == 400
    assert "principal" in graph_error(resp)["message"]
    admin.create_principal(blueprint["appId"])
    again = admin.call(
        "POST",
        "/serviceprincipals/graph.agentIdentityBlueprintPrincipal",
        {"appId": blueprint["appId"]},
    )
    assert again.status_code == 409


SEED = """
[[tenants]]
id = "2b2b2b2b-2222-4222-8222-222222222222"

[[tenants.blueprints]]
app_id = "ABCDEF01-3333-4333-8333-333333333333"
display_name = "Seeded, upper-case app id"
secrets = ["seeded-secret"]
roles = ["AgentIdentity.CreateAsManager"]

[[tenants.users]]
upn = "bob@fabrikam.example"
object_id = "77777777-7777-4777-8777-777777777777"
"""


def test_graph_over_a_seeded_directory(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A --seed directory's blueprint provisions through Graph too; ids match
    whatever their case, and the tenant's domain is its users' (fabrikam.example)."""
    seed = tmp_path / "seed.toml"
    seed.write_text(SEED)
    emu = emulator_factory(seed=seed)
    blueprint_id = "ABCDEF01-3333-4333-8333-333333333333"
    client = blueprint_client(emu, blueprint_id, "seeded-secret")
    resp = client.create_agent(blueprint_id, "bob@fabrikam.example", "Seeded agent")
    assert resp.status_code == 201, resp.text
    agent_id = resp.json()["appId"]
    t1 = app(emu, blueprint_id, "seeded-secret").acquire_token_for_client(
        [TX_SCOPE], fmi_path=agent_id
    )
    assert "access_token" in t1, t1
    user = admin_client(emu, upn="bob@fabrikam.example").call(
        "POST",
        "/users",
        {
            "@odata.type": "microsoft.graph.agentUser",
            "displayName": "Seeded agent user",
            "mailNickname": "seeded",
            "userPrincipalName": "seeded@contoso.example",
            "identityParentId": agent_id,
            "accountEnabled": True,
        },
    )
    assert user.status_code == 400  # contoso.example is not this tenant's domain
