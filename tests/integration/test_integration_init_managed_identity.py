"""``init --credential managed-identity``: the new blueprint trusts this host's
managed identity through a federated identity credential (issuer
``{authority}/{tenant}/v2.0``, subject = the identity's principal id, audience
``api://AzureADTokenExchange``: create-blueprint.md); no secret exists at all.
The daemon then presents the identity's IMDS token (the emulator's IMDS, which
MSAL finds through ``AZURE_POD_IDENTITY_AUTHORITY_HOST``) as the blueprint's
client assertion."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from emulator_graph_helpers import admin_token_file, scripted_init
from helper_stack import DaemonProcess, HelperSandbox, describe
from test_integration_blueprint_mi import MI_CLIENT_ID, MI_OBJECT_ID, SEED

pytestmark = pytest.mark.integration


def test_init_with_the_hosts_managed_identity(
    emulator_factory: Callable[..., Any],
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
    tmp_path: Path,
) -> None:
    emu = emulator_factory(seed=SEED, imds_port=0, replication_delay_s=0.5)
    sandbox.env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = emu.info["imds_endpoint"]
    start_daemon()  # init's reload makes it see the new profile
    token_file = admin_token_file(emu, tmp_path, upn="bob@fabrikam.example")
    done = sandbox.client(
        *scripted_init(emu),
        *("--graph-token-file", str(token_file), "--agent-name", "mi bot"),
        *("--credential", "managed-identity", "--managed-identity", MI_CLIENT_ID),
        *("--managed-identity-principal-id", MI_OBJECT_ID, "--json"),
        timeout=120,
    )
    assert done.returncode == 0, describe(done)
    result = json.loads(done.stdout)
    config = sandbox.config_path.read_text()
    assert f'blueprint_credential = {{managed_identity = "{MI_CLIENT_ID}"}}' in config
    assert "secret" not in config
    got = sandbox.client("get", "--format", "json")
    assert got.returncode == 0, describe(got)
    assert json.loads(got.stdout)["agent_identity_app_id"] == result["agent_identity_app_id"]
    legs = emu.stats()["token_requests"]["by_leg"]
    assert legs.get("managed_identity", 0) >= 1
