"""Real Azure SDKs as clients, unchanged, run under ``agentid-helper exec``.

``exec`` registers a managed identity session with the daemon and exports
``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``; azure-identity's
``ManagedIdentityCredential`` / ``DefaultAzureCredential`` (through MSAL's
App Service source) and the async credential under msgraph-sdk's
``GraphServiceClient`` then get the agent's tokens from the daemon. The Graph
stub verifies them against the emulator's JWKS. In-process,
``AgentIdentityCredential`` drives an azure-core pipeline the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from graph_stub import GRAPH_RESOURCE, GraphStub
from helper_stack import DaemonProcess, HelperSandbox, describe
from tls_certs import ServerTls
from token_gate import TokenGate

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "sdk_apps"
PROFILE = "graph-bot"
GRAPH_SCOPE = f"{GRAPH_RESOURCE}/.default"
APP_TIMEOUT_S = 90


@dataclass
class Stack:
    sandbox: HelperSandbox
    daemon: DaemonProcess
    gate: TokenGate
    info: dict[str, Any]

    def run_app(
        self, app: str, *args: str, profile: str = PROFILE, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.sandbox.client(
            "exec",
            "--profile",
            profile,
            "--",
            sys.executable,
            str(APPS / app),
            *args,
            input=input,
            timeout=APP_TIMEOUT_S,
        )

    def served_token(self, scope: str = GRAPH_SCOPE) -> dict[str, Any]:
        got = self.sandbox.client("get", "--profile", PROFILE, "--scope", scope, "--format", "json")
        assert got.returncode == 0, describe(got)
        body: dict[str, Any] = json.loads(got.stdout)
        return body


def reports(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, describe(proc)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def sha256(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def stack(
    emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> Iterator[Stack]:
    info = emulator.info
    sandbox.configure_one_profile(info, PROFILE, resource=GRAPH_RESOURCE, default_profile=PROFILE)
    daemon = start_daemon()
    gate = TokenGate.from_emulator(info, audience=GRAPH_RESOURCE)
    yield Stack(sandbox, daemon, gate, info)
    daemon.assert_log_free_of([*gate.seen, info["blueprint_secret"]])


def check_agent_token(stack: Stack, report: dict[str, Any]) -> None:
    """The SDK got the daemon's token for the agent: same digest, valid at Graph."""
    served = stack.served_token()
    assert report["sha256"] == sha256(served["access_token"])
    assert report["expires_on"] == served["expires_on"]
    claims = stack.gate.verify(served["access_token"], record=False)
    assert claims["appid"] == stack.info["agent_identity_app_id"]
    assert report["claims"]["appid"] == stack.info["agent_identity_app_id"]
    assert report["claims"]["aud"] == GRAPH_RESOURCE


def test_managed_identity_credential_under_exec(stack: Stack) -> None:
    (report,) = reports(stack.run_app("app_managed_identity.py", GRAPH_SCOPE))
    check_agent_token(stack, report)


def test_default_azure_credential_under_exec(stack: Stack) -> None:
    (report,) = reports(stack.run_app("app_default_credential.py", GRAPH_SCOPE))
    check_agent_token(stack, report)


def test_default_azure_credential_sends_azure_client_id(stack: Stack) -> None:
    """DefaultAzureCredential passes AZURE_CLIENT_ID as the managed identity's client_id:
    the agent's app id works, another id is refused with a message naming both."""

    def default_credential_app(client_id: str) -> subprocess.CompletedProcess[str]:
        return stack.sandbox.client(
            "exec",
            "--profile",
            PROFILE,
            "--",
            sys.executable,
            str(APPS / "app_default_credential.py"),
            GRAPH_SCOPE,
            env={"AZURE_CLIENT_ID": client_id},
            timeout=APP_TIMEOUT_S,
        )

    agent, other = stack.info["agent_identity_app_id"], stack.info["blueprint_app_id"]
    (report,) = reports(default_credential_app(agent))
    check_agent_token(stack, report)
    refused = default_credential_app(other)
    assert refused.returncode != 0
    assert "not this session's agent identity" in refused.stderr
    assert other in refused.stderr
    assert agent in refused.stderr


def test_azure_cli_credential_reads_get_format_az(stack: Stack) -> None:
    """AzureCliCredential parses `az account get-access-token`; here `az` is a shim
    that runs `agentid-helper get --format az`."""
    path = f"{APPS}{os.pathsep}{stack.sandbox.env['PATH']}"
    proc = subprocess.run(
        [sys.executable, str(APPS / "app_azure_cli.py"), GRAPH_SCOPE],
        capture_output=True,
        text=True,
        env={**stack.sandbox.env, "PATH": path},
        cwd=stack.sandbox.root,
        timeout=APP_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    (report,) = reports(proc)
    check_agent_token(stack, report)
    shown = stack.sandbox.client("get", "--format", "az")
    assert shown.returncode == 0, describe(shown)
    az = json.loads(shown.stdout)
    assert az["tenant"] == stack.info["tenant_id"]
    assert az["tokenType"] == "Bearer"
    assert sha256(az["accessToken"]) == report["sha256"]


def test_long_running_child_gets_fresh_tokens(stack: Stack) -> None:
    """A token in an environment variable goes stale; the endpoint does not."""
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "agentid-helper"),
            "exec",
            "--profile",
            PROFILE,
            "--",
            sys.executable,
            str(APPS / "app_managed_identity.py"),
            GRAPH_SCOPE,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stack.sandbox.env,
        cwd=stack.sandbox.root,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        first = json.loads(proc.stdout.readline())
        flushed = stack.sandbox.client("flush", "--all")
        assert flushed.returncode == 0, describe(flushed)
        proc.stdin.write("again\n")
        proc.stdin.flush()
        second = json.loads(proc.stdout.readline())
        proc.stdin.close()
        assert proc.wait(timeout=APP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first["sha256"] != second["sha256"]
    check_agent_token(stack, second)


def test_graph_service_client_under_exec(stack: Stack, server_tls: ServerTls) -> None:
    with GraphStub(server_tls, stack.gate) as graph:
        proc = stack.run_app("app_graph_client.py", graph.url, str(server_tls.ca_file))
        (report,) = reports(proc)
    assert report["users"] == ["Adele Vance", "Megan Bowen"]
    assert graph.callers == [stack.info["agent_identity_app_id"]]
    assert graph.rejections == []
    assert stack.gate.accepted[-1] == stack.served_token()["access_token"]


def test_azure_core_pipeline_with_agent_identity_credential(
    stack: Stack, server_tls: ServerTls
) -> None:
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    from agentid_client.azure import AgentIdentityCredential

    credential = AgentIdentityCredential(
        PROFILE, socket_path=str(stack.sandbox.socket_path), timeout=60
    )
    pipeline = Pipeline(
        transport=RequestsTransport(connection_verify=str(server_tls.ca_file)),
        policies=[BearerTokenCredentialPolicy(credential, GRAPH_SCOPE)],
    )
    with GraphStub(server_tls, stack.gate) as graph, pipeline:
        first = pipeline.run(HttpRequest("GET", f"{graph.url}/v1.0/users"))
        second = pipeline.run(HttpRequest("GET", f"{graph.url}/v1.0/organization"))
    assert first.http_response.status_code == 200
    assert second.http_response.status_code == 200
    assert [u["displayName"] for u in first.http_response.json()["value"]] == [
        "Adele Vance",
        "Megan Bowen",
    ]
    assert second.http_response.json()["value"][0]["id"] == stack.info["tenant_id"]
    assert graph.callers == [stack.info["agent_identity_app_id"]] * 2
    assert stack.gate.accepted[-1] == stack.served_token()["access_token"]
