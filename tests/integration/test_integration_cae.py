"""CAE end to end: azure-core's BearerTokenCredentialPolicy against a resource that
revokes a token and answers with a claims challenge (cae_resource.py).

Through ``AgentIdentityCredential`` (``enable_cae=True`` declares ``cp1``) and
through the managed identity endpoint of ``agentid-helper exec``: the first
request succeeds, the emulator revokes that token (its ``revoke_token``
fault), the next request gets ``401 insufficient_claims``, the policy asks
again with the claims, the daemon goes to the identity provider (never its
cache) and the retry succeeds with a new token, which the cache then serves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cae_resource import CaeResource, digest
from graph_stub import GRAPH_RESOURCE
from helper_stack import DaemonProcess, HelperSandbox, describe, helper_bin
from tls_certs import ServerTls
from token_gate import TokenGate

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "sdk_apps"
PROFILE = "cae-bot"
SCOPE = f"{GRAPH_RESOURCE}/.default"


@pytest.fixture
def daemon(
    emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> Iterator[DaemonProcess]:
    info = emulator.info
    sandbox.configure_one_profile(
        info,
        PROFILE,
        resource=GRAPH_RESOURCE,
        default_profile=PROFILE,
        client_capabilities=["cp1"],
    )
    daemon = start_daemon()
    yield daemon
    daemon.assert_log_free_of([info["blueprint_secret"]])


@pytest.fixture
def resource(emulator: Any, server_tls: ServerTls) -> Iterator[CaeResource]:
    gate = TokenGate.from_emulator(emulator.info, audience=GRAPH_RESOURCE)

    def introspect(token: str) -> dict[str, Any]:
        return dict(emulator.admin("POST", "/_emulator/tokens/introspect", {"token": token}))

    with CaeResource(server_tls, gate, introspect) as res:
        yield res


def revoke_last_accepted(emulator: Any, token: str) -> None:
    answer = emulator.admin("POST", "/_emulator/faults", {"revoke_token": token})
    assert answer["revoked"] == "access_token"


def test_agent_identity_credential_answers_a_cae_challenge(
    daemon: DaemonProcess,
    sandbox: HelperSandbox,
    resource: CaeResource,
    emulator: Any,
    server_tls: ServerTls,
) -> None:
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    from agentid_client.azure import AgentIdentityCredential

    credential = AgentIdentityCredential(PROFILE, socket_path=str(sandbox.socket_path), timeout=60)
    pipeline = Pipeline(
        transport=RequestsTransport(connection_verify=str(server_tls.ca_file)),
        policies=[BearerTokenCredentialPolicy(credential, SCOPE, enable_cae=True)],
    )
    with pipeline:
        first = pipeline.run(HttpRequest("GET", f"{resource.url}/cae")).http_response
        assert first.status_code == 200
        assert first.json()["xms_cc"] == ["cp1"]
        old = credential.get_token(SCOPE, enable_cae=True).token
        assert digest(old) == resource.accepted[-1]

        revoke_last_accepted(emulator, old)
        second = pipeline.run(HttpRequest("GET", f"{resource.url}/cae")).http_response

    assert second.status_code == 200
    assert resource.challenged == [digest(old)]
    new = credential.get_token(SCOPE, enable_cae=True).token  # the cache now serves it
    assert new != old
    assert resource.accepted[-1] == digest(new)
    cli = sandbox.client("get", "--profile", PROFILE, "--format", "json")
    assert cli.returncode == 0, describe(cli)
    assert json.loads(cli.stdout)["access_token"] == new


def test_managed_identity_endpoint_answers_a_cae_challenge(
    daemon: DaemonProcess,
    sandbox: HelperSandbox,
    resource: CaeResource,
    emulator: Any,
    server_tls: ServerTls,
) -> None:
    proc = subprocess.Popen(
        [
            helper_bin("agentid-helper"),
            "exec",
            "--profile",
            PROFILE,
            "--",
            sys.executable,
            str(APPS / "app_cae_pipeline.py"),
            f"{resource.url}/cae",
            str(server_tls.ca_file),
            SCOPE,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=sandbox.env,
        cwd=sandbox.root,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        first = json.loads(proc.stdout.readline() or "{}")
        assert first.get("status") == 200, first
        old_digest = first["body"]["sha256"]
        served = sandbox.client("get", "--profile", PROFILE, "--format", "json")
        old = json.loads(served.stdout)["access_token"]
        assert digest(old) == old_digest
        assert first["body"]["xms_cc"] == ["cp1"]

        revoke_last_accepted(emulator, old)
        proc.stdin.write("again\n")
        proc.stdin.flush()
        second = json.loads(proc.stdout.readline() or "{}")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert second.get("status") == 200, second
    assert resource.challenged == [old_digest]
    assert second["body"]["sha256"] != old_digest
    now = json.loads(sandbox.client("get", "--profile", PROFILE, "--format", "json").stdout)
    assert digest(now["access_token"]) == second["body"]["sha256"]
