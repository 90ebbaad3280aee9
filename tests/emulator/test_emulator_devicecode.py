"""The device code flow against the emulator, driven by MSAL's real
``PublicClientApplication`` (``initiate_device_flow`` /
``acquire_token_by_device_flow``), approved from another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
from emulator_graph_helpers import GRAPH, GraphClient
from emulator_harness import Emulator, start_emulator
from emulator_msal_helpers import PinnedSession

from agentid_emulator.device_codes import DEVICE_CODE_GRANT, DEVICE_CODE_LIFETIME_S, DeviceCodes
from agentid_emulator.errors import AadstsError

# Microsoft Graph PowerShell's public client id (a known public client of the emulator).
GRAPH_POWERSHELL = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
SCOPES = [f"{GRAPH}/AgentIdentityBlueprint.Create", f"{GRAPH}/AgentIdentity.Create.All"]


@pytest.fixture(scope="module")
def emu(
    tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path
) -> Iterator[Emulator]:
    emulator = start_emulator(
        tmp_path_factory.mktemp("devicecode"), key_template=emulator_key_template
    )
    try:
        yield emulator
    finally:
        emulator.stop()


def _public_app(emu: Emulator, client_id: str = GRAPH_POWERSHELL) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        client_id,
        authority=emu.authority,
        instance_discovery=False,
        http_client=PinnedSession(emu.ca_bundle),
    )


def _poll(emu: Emulator, flow: dict[str, Any]) -> dict[str, Any]:
    resp = PinnedSession(emu.ca_bundle).post(
        emu.token_endpoint,
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": GRAPH_POWERSHELL,
            "device_code": flow["device_code"],
        },
    )
    return dict(resp.json())


def test_msal_device_flow_gives_the_approving_user_a_delegated_graph_token(emu: Emulator) -> None:
    pca = _public_app(emu)
    flow = pca.initiate_device_flow(scopes=SCOPES)
    assert "user_code" in flow, flow
    assert flow["verification_uri"].startswith(emu.authority_host)
    assert flow["user_code"] in flow["message"]
    page = PinnedSession(emu.ca_bundle).get(flow["verification_uri"])
    assert page.status_code == 200 and "/_emulator/devicecode/approve" in page.json()["message"]
    assert _poll(emu, flow)["error"] == "authorization_pending"

    def approve() -> None:  # while MSAL is already polling
        emu.admin(
            "POST",
            "/_emulator/devicecode/approve",
            {"user_code": flow["user_code"], "upn": emu.user_upn},
        )

    timer = threading.Timer(1.5, approve)
    timer.start()
    flow["expires_at"] = time.time() + 20  # bound the test (MSAL polls until then)
    try:
        result = pca.acquire_token_by_device_flow(flow)
    finally:
        timer.cancel()
        timer.join(10)
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == GRAPH
    assert claims["upn"] == emu.user_upn
    assert claims["appid"] == GRAPH_POWERSHELL
    assert set(claims["scp"].split()) == {
        "AgentIdentityBlueprint.Create",
        "AgentIdentity.Create.All",
    }
    assert result["id_token_claims"]["preferred_username"] == emu.user_upn

    # The token works at the emulator's Graph: the admin creates a blueprint.
    resp = GraphClient(emu, result["access_token"]).call(
        "POST",
        "/applications",
        {
            "@odata.type": "Microsoft.Graph.AgentIdentityBlueprint",
            "displayName": "From device flow",
        },
    )
    assert resp.status_code == 201, resp.text
    # A device code is redeemed once.
    assert _poll(emu, flow)["error"] == "invalid_grant"


def test_device_code_errors(emu: Emulator) -> None:
    unknown_client = _public_app(emu, "11111111-1111-4111-8111-111111111111")
    refused = unknown_client.initiate_device_flow(scopes=SCOPES)
    assert refused["error_codes"] == [700016], refused

    flow = _public_app(emu).initiate_device_flow(scopes=SCOPES)
    pending = _poll(emu, flow)
    assert pending["error_codes"] == [70016]

    session = PinnedSession(emu.ca_bundle)
    approve_url = f"{emu.authority_host}/_emulator/devicecode/approve"
    stranger = session.post(
        approve_url, json={"user_code": flow["user_code"], "upn": "x@contoso.example"}
    )
    assert stranger.status_code == 400
    assert stranger.json()["error_codes"] == [50034]
    agent_user = session.post(
        approve_url, json={"user_code": flow["user_code"], "upn": emu.agent_user_upn}
    )
    assert agent_user.status_code == 400  # agent users have no interactive sign-in
    wrong_code = session.post(approve_url, json={"user_code": "NOPE", "upn": emu.user_upn})
    assert wrong_code.status_code == 404
    assert _poll(emu, flow)["error"] == "authorization_pending"  # still pending


def test_users_token_accepts_delegated_scopes(emu: Emulator) -> None:
    token = emu.admin(
        "POST",
        "/_emulator/users/token",
        {"upn": emu.user_upn, "scope": f"{GRAPH}/AgentIdentityBlueprint.Create"},
    )["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == GRAPH
    assert claims["scp"] == "AgentIdentityBlueprint.Create"
    both = PinnedSession(emu.ca_bundle).post(
        f"{emu.authority_host}/_emulator/users/token",
        json={"upn": emu.user_upn, "scope": "User.Read", "audience": GRAPH},
    )
    assert both.status_code == 400


def test_an_expired_device_code_is_expired_token() -> None:
    """Sans-IO, with a clock: past ``expires_in`` the poll gets AADSTS70019."""
    codes = DeviceCodes()
    tenant = "7a3e1c52-4b1d-4e0a-9c61-2f3b5d7e9a10"
    flow = codes.issue(tenant, GRAPH_POWERSHELL, "User.Read", now=1000.0, verification_uri="x")
    form = {"client_id": GRAPH_POWERSHELL, "device_code": str(flow["device_code"])}
    with pytest.raises(AadstsError) as pending:
        codes.redeem(tenant, form, now=1001.0)
    assert pending.value.error == "authorization_pending"
    with pytest.raises(AadstsError) as expired:
        codes.redeem(tenant, form, now=1000.0 + DEVICE_CODE_LIFETIME_S)
    assert (expired.value.code, expired.value.error) == (70019, "expired_token")
    with pytest.raises(KeyError):
        codes.approve(str(flow["user_code"]), "alice@contoso.example", now=2000.0)
