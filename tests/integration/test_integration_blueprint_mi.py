"""A managed identity, or AKS workload identity, as the blueprint's credential.

The daemon gets the managed identity's token for ``api://AzureADTokenExchange``
with MSAL's ManagedIdentityClient (here from the emulator's IMDS endpoint,
which MSAL finds through ``AZURE_POD_IDENTITY_AUTHORITY_HOST``) and presents it
as the blueprint's ``client_assertion`` for T1. That token is a cache entry of
its own: two agents of the blueprint make two T1 requests but one managed
identity request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from graph_stub import GRAPH_RESOURCE
from helper_stack import DaemonProcess, HelperSandbox, describe
from token_gate import TokenGate
from tooling import SUPPORT

pytestmark = pytest.mark.integration

SEED = SUPPORT / "emulator_seed_example.toml"
# From the seed: one blueprint trusting the managed identity, two agents.
AGENT_A = "44444444-4444-4444-8444-444444444444"
AGENT_B = "55555555-5555-4555-8555-555555555555"
BLUEPRINT = "33333333-3333-4333-8333-333333333333"
MI_CLIENT_ID = "99999999-9999-4999-8999-999999999999"
MI_OBJECT_ID = "88888888-8888-4888-8888-888888888888"
MI_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/agents/"
    "providers/Microsoft.ManagedIdentity/userAssignedIdentities/build-agents"
)


def by_leg(emu: Any) -> dict[str, int]:
    return dict(emu.stats()["token_requests"]["by_leg"])


def mi_config(emu: Any, credential: Any) -> dict[str, Any]:
    info = emu.info
    profile = {
        "blueprint_app_id": BLUEPRINT,
        "scope": f"{GRAPH_RESOURCE}/.default",
        "blueprint_credential": credential,
    }
    return {
        "default_profile": "a",
        "defaults": {
            "tenant_id": info["tenant_id"],
            "authority_host": info["authority_host"],
            "ca_bundle": info["ca_bundle"],
        },
        "profiles": {
            "a": {**profile, "agent_identity_app_id": AGENT_A},
            "b": {**profile, "agent_identity_app_id": AGENT_B},
        },
    }


@pytest.fixture
def imds_emulator(emulator_factory: Callable[..., Any]) -> Any:
    return emulator_factory(seed=SEED, imds_port=0)


def start(
    sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess], emu: Any, credential: Any
) -> DaemonProcess:
    sandbox.write_config(mi_config(emu, credential))
    # Where MSAL looks for IMDS (the emulator's, not 169.254.169.254).
    sandbox.env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = emu.info["imds_endpoint"]
    return start_daemon()


def get(sandbox: HelperSandbox, *args: str) -> dict[str, Any]:
    got = sandbox.client("get", "--format", "json", *args)
    assert got.returncode == 0, describe(got)
    body: dict[str, Any] = json.loads(got.stdout)
    return body


@pytest.mark.parametrize(
    "credential",
    [
        {"managed_identity": MI_CLIENT_ID},
        {"managed_identity": {"client_id": MI_CLIENT_ID}},
        {"managed_identity": {"object_id": MI_OBJECT_ID}},
        {"managed_identity": {"resource_id": MI_RESOURCE_ID}},
        {"managed_identity": "system"},  # the only identity of this "VM"
    ],
)
def test_managed_identity_blueprint_credential(
    imds_emulator: Any,
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
    credential: Any,
) -> None:
    daemon = start(sandbox, start_daemon, imds_emulator, credential)
    body = get(sandbox)
    gate = TokenGate.from_emulator(imds_emulator.info, audience=GRAPH_RESOURCE)
    claims = gate.verify(body["access_token"])
    assert claims["appid"] == AGENT_A
    assert claims["xms_par_app_azp"] == BLUEPRINT
    legs = by_leg(imds_emulator)
    assert legs.get("managed_identity") == 1
    assert legs.get("t1") == 1
    daemon.assert_log_free_of([body["access_token"]])


def test_managed_identity_token_is_one_cache_entry_for_every_agent(
    imds_emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> None:
    start(sandbox, start_daemon, imds_emulator, {"managed_identity": MI_CLIENT_ID})
    get(sandbox, "--profile", "a")
    get(sandbox, "--profile", "b")
    get(sandbox, "--profile", "a", "--scope", "https://vault.azure.net/.default")
    legs = by_leg(imds_emulator)
    # One T1 per agent, one managed identity token for both.
    assert (legs.get("managed_identity"), legs.get("t1")) == (1, 2), legs
    status = sandbox.client("status", "--json")
    assert status.returncode == 0, describe(status)
    entries = json.loads(status.stdout)["entries"]
    mi_rows = [e for e in entries if e["kind"] == "managed_identity"]
    assert len(mi_rows) == 1
    assert mi_rows[0]["state"] == "valid"
    assert mi_rows[0]["managed_identity"] == f"client_id={MI_CLIENT_ID}"
    # force_refresh proves the credential works now: from the managed identity up.
    get(sandbox, "--profile", "a", "--force-refresh")
    legs = by_leg(imds_emulator)
    assert (legs.get("managed_identity"), legs.get("t1")) == (2, 3), legs


def test_unknown_managed_identity_is_a_clear_error(
    imds_emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> None:
    start(
        sandbox,
        start_daemon,
        imds_emulator,
        {"managed_identity": "12345678-1234-4234-8234-123456789012"},
    )
    got = sandbox.client("get")
    assert got.returncode == 4, describe(got)
    assert "managed_identity" in got.stderr
    assert by_leg(imds_emulator).get("t1", 0) == 0


def test_workload_identity_blueprint_credential(
    emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> None:
    """``"workload_identity"``: AZURE_FEDERATED_TOKEN_FILE, and AZURE_CLIENT_ID is the
    blueprint when no profile names one (as the AKS webhook sets them)."""
    info = emulator.info
    sandbox.write_config(
        {
            "default_profile": "wi",
            "defaults": {"authority_host": info["authority_host"], "ca_bundle": info["ca_bundle"]},
            "profiles": {
                "wi": {
                    "agent_identity_app_id": info["agent_identity_app_id"],
                    "blueprint_credential": "workload_identity",
                }
            },
        }
    )
    sandbox.env.update(
        {
            "AZURE_FEDERATED_TOKEN_FILE": info["blueprint_federated_token_file"],
            "AZURE_CLIENT_ID": info["blueprint_app_id"],
            "AZURE_TENANT_ID": info["tenant_id"],
        }
    )
    daemon = start_daemon()
    body = get(sandbox)
    gate = TokenGate.from_emulator(info, audience=GRAPH_RESOURCE)
    claims = gate.verify(body["access_token"])
    assert claims["appid"] == info["agent_identity_app_id"]
    assert claims["xms_par_app_azp"] == info["blueprint_app_id"]
    daemon.assert_log_free_of([body["access_token"]])


def test_workload_identity_without_token_file_is_a_config_error(
    emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> None:
    info = emulator.info
    sandbox.write_config(
        {
            "defaults": {
                "tenant_id": info["tenant_id"],
                "authority_host": info["authority_host"],
                "ca_bundle": info["ca_bundle"],
            },
            "profiles": {
                "wi": {
                    "agent_identity_app_id": info["agent_identity_app_id"],
                    "blueprint_app_id": info["blueprint_app_id"],
                    "blueprint_credential": "workload_identity",
                }
            },
        }
    )
    start_daemon()
    got = sandbox.client("get", "--profile", "wi")
    assert got.returncode == 5, describe(got)
    assert "AZURE_FEDERATED_TOKEN_FILE" in got.stderr


def test_managed_identity_token_is_refreshed_ahead(
    emulator_factory: Callable[..., Any],
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
) -> None:
    """Like T1, the identity's token is refreshed in the background before it expires."""
    emu = emulator_factory(seed=SEED, imds_port=0, token_lifetime_s=30)
    start(sandbox, start_daemon, emu, {"managed_identity": MI_CLIENT_ID})
    get(sandbox, "--min-validity", "0")
    assert by_leg(emu).get("managed_identity") == 1
    # Refresh ahead happens at 2/3 to 3/4 of the lifetime: wait for it (bounded).
    deadline = time.monotonic() + 120
    while by_leg(emu).get("managed_identity", 0) < 2:
        assert time.monotonic() < deadline, "the managed identity token was not refreshed"
        time.sleep(0.5)
    status = json.loads(sandbox.client("status", "--json").stdout)
    (row,) = [e for e in status["entries"] if e["kind"] == "managed_identity"]
    assert row["state"] in ("valid", "refreshing")
    assert row["last_error"] is None
