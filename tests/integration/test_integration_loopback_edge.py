"""What a caller of the daemon, or a holder of a session header, can make it do.

Real daemon, real emulator (its own, for faults and counters), real Azure
SDKs under ``agentid-helper exec``:

- a flood of claims challenges costs a handful of identity-provider requests,
  and none while Entra asked for a pause (on the socket and through the
  managed identity endpoint's ``&claims=``);
- the endpoint forwards a short ``Retry-After``, so the SDKs' retries end in
  seconds, not in three times Entra's pause;
- ``DefaultAzureCredential`` under ``exec`` never falls through to another
  identity (a developer's ``az login``) when the agent's token is refused;
- ``exec --no-token-env`` starts its command while Entra is down, and the
  command's SDK gets a token once Entra is back.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from graph_stub import GRAPH_RESOURCE
from helper_stack import DaemonProcess, HelperSandbox, describe, helper_bin
from test_integration_mi_endpoint import Held, hold, mi_get

from agentid_client import transport
from agentid_client.cli import TOKEN_CREDENTIALS_VALUE, TOKEN_CREDENTIALS_VAR
from agentid_daemon.cache.token_cache import CHALLENGE_INTERVAL_S
from agentid_daemon.identity_endpoint.protocol import API_VERSION, MAX_RETRY_AFTER_S

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "sdk_apps"
PROFILE = "graph-bot"
GRAPH_SCOPE = f"{GRAPH_RESOURCE}/.default"
VAULT_RESOURCE = "https://vault.azure.net"
APP_TIMEOUT_S = 90
ENTRA_PAUSE_S = 120


def claims(n: int) -> str:
    """A CAE challenge's claims, as a resource sends them (each n a new one)."""
    return json.dumps({"access_token": {"nbf": {"essential": True, "value": str(1700000000 + n)}}})


@dataclass
class Edge:
    emulator: Any
    sandbox: HelperSandbox
    daemon: DaemonProcess

    def requests_to_entra(self) -> int:
        return int(self.emulator.stats()["token_requests"]["total"])

    def post_token(self, body: dict[str, Any]) -> transport.Response:
        return transport.request(
            str(self.sandbox.socket_path),
            "POST",
            "/v1/token",
            body,
            deadline=time.monotonic() + 30,
        )

    def run_app(
        self, app: str, *exec_args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.sandbox.client(
            "exec",
            "--profile",
            PROFILE,
            *exec_args,
            "--",
            sys.executable,
            str(APPS / app),
            GRAPH_SCOPE,
            env=env,
            timeout=APP_TIMEOUT_S,
        )


@pytest.fixture
def edge(
    emulator_factory: Callable[..., Any],
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
) -> Iterator[Edge]:
    emulator = emulator_factory()
    sandbox.configure_one_profile(
        emulator.info, PROFILE, resource=GRAPH_RESOURCE, default_profile=PROFILE
    )
    edge = Edge(emulator, sandbox, start_daemon())
    yield edge
    edge.daemon.assert_log_free_of([emulator.info["blueprint_secret"]])


@pytest.fixture
def held(edge: Edge) -> Iterator[Held]:
    """A process holding an endpoint session (what a header holder has)."""
    session = hold(edge.sandbox, "--profile", PROFILE)
    yield session
    session.release()


# -- claims floods (the socket and the endpoint) ------------------------------------


def test_a_claims_flood_costs_a_handful_of_requests(edge: Edge, held: Held) -> None:
    assert edge.post_token({}).status == 200
    before = edge.requests_to_entra()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: edge.post_token({"claims": claims(1)}), range(200)))
    assert [a.status for a in answers] == [200] * 200
    assert len({a.json()["access_token"] for a in answers}) == 1
    assert edge.requests_to_entra() - before == 1

    # A new challenge right after is not sent (one per key and interval) ...
    refused = edge.post_token({"claims": claims(2)})
    assert refused.status == 503
    assert 0 < int(refused.headers["retry-after"]) <= CHALLENGE_INTERVAL_S
    assert "at most one new challenge" in refused.json()["error_description"]
    assert edge.requests_to_entra() - before == 1


def test_no_claims_reach_entra_while_it_asked_for_a_pause(edge: Edge, held: Held) -> None:
    assert edge.post_token({}).status == 200
    # Entra answers 429 with Retry-After: 120 to the next request for the key.
    assert transport.request(
        str(edge.sandbox.socket_path), "DELETE", "/v1/token", {}, deadline=time.monotonic() + 30
    ).status in (200, 204)
    edge.emulator.set_faults(status=429, retry_after_s=ENTRA_PAUSE_S)
    paused = edge.post_token({})
    assert paused.status == 503
    assert int(paused.headers["retry-after"]) >= ENTRA_PAUSE_S - 5
    before = edge.requests_to_entra()

    for n in range(50):  # on the socket, each a different challenge
        answer = edge.post_token({"claims": claims(n)})
        assert answer.status == 503
        assert int(answer.headers["retry-after"]) > ENTRA_PAUSE_S - 30
    for n in range(50):  # through the endpoint, with only the session's header
        status, headers, body = mi_get(
            held.endpoint,
            header=held.header,
            params={"resource": GRAPH_RESOURCE, "api-version": API_VERSION, "claims": claims(n)},
        )
        assert status == 503, body
        assert 1 <= int(headers["retry-after"]) <= MAX_RETRY_AFTER_S
    assert edge.requests_to_entra() == before


# -- Retry-After through the endpoint ------------------------------------------------


def test_the_sdk_is_not_blocked_by_entras_retry_after(edge: Edge, held: Held) -> None:
    """Entra: 503 with Retry-After: 300 for a key not cached. The SDK (three retries,
    each sleeping Retry-After) gives up within seconds, and Entra is asked once."""
    edge.emulator.set_faults(status=503, retry_after_s=300)
    before = edge.requests_to_entra()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(APPS / "app_managed_identity.py"), f"{VAULT_RESOURCE}/.default"],
        capture_output=True,
        text=True,
        env={
            **edge.sandbox.env,
            "IDENTITY_ENDPOINT": held.endpoint,
            "IDENTITY_HEADER": held.header,
        },
        cwd=edge.sandbox.root,
        timeout=APP_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode != 0, "the SDK got a token during the outage"
    assert proc.stdout == ""
    assert elapsed < 3 * MAX_RETRY_AFTER_S + 10, f"the SDK was blocked {elapsed:.0f} s"
    assert edge.requests_to_entra() - before == 1  # the retries were answered by the daemon


# -- DefaultAzureCredential never becomes someone else ---------------------------------


def developer_az(directory: Path) -> tuple[Path, Path]:
    """A fake `az` with a developer signed in: it answers `az account
    get-access-token` with the developer's token and notes each run."""
    directory.mkdir()
    ran = directory / "az-ran"

    def b64(obj: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    token = ".".join(
        [b64({"alg": "none"}), b64({"appid": "developer-az-login", "aud": "x", "tid": "t"}), "sig"]
    )
    answer = json.dumps(
        {
            "accessToken": token,
            "expires_on": int(time.time()) + 3600,
            "tokenType": "Bearer",
            "tenant": "t",
        }
    )
    az = directory / "az"
    az.write_text(f"#!/bin/sh\necho run >> '{ran}'\ncat <<'EOF'\n{answer}\nEOF\n")
    az.chmod(0o755)
    return directory, ran


def test_default_credential_never_falls_through_to_az_login(edge: Edge, tmp_path: Path) -> None:
    bindir, ran = developer_az(tmp_path / "developer-bin")
    env = {
        "PATH": f"{bindir}:{edge.sandbox.env['PATH']}",
        # not the agent: the endpoint refuses this client_id with a 400
        "AZURE_CLIENT_ID": edge.emulator.info["blueprint_app_id"],
    }
    refused = edge.run_app("app_default_credential.py", env=env)
    assert refused.returncode != 0, "DefaultAzureCredential returned someone's token"
    assert "developer-az-login" not in refused.stdout
    assert refused.stdout == ""
    assert "not this session's agent identity" in refused.stderr
    assert not ran.exists(), "the developer's az was asked"

    # The caller's own value wins: an empty one restores the SDK's whole chain,
    # which is exactly the fall-through exec otherwise prevents.
    chained = edge.run_app("app_default_credential.py", env={**env, TOKEN_CREDENTIALS_VAR: ""})
    assert chained.returncode == 0, describe(chained)
    assert json.loads(chained.stdout)["claims"]["appid"] == "developer-az-login"
    assert ran.exists()


def test_exec_tells_the_sdks_to_use_the_endpoint_only(edge: Edge) -> None:
    report = edge.sandbox.client(
        "exec",
        "--",
        sys.executable,
        "-c",
        f"import os; print(os.environ['{TOKEN_CREDENTIALS_VAR}'])",
    )
    assert report.stdout.strip() == TOKEN_CREDENTIALS_VALUE
    kept = edge.sandbox.client(
        "exec",
        "--",
        sys.executable,
        "-c",
        f"import os; print(os.environ['{TOKEN_CREDENTIALS_VAR}'])",
        env={TOKEN_CREDENTIALS_VAR: "prod"},
    )
    assert kept.stdout.strip() == "prod"
    without_endpoint = edge.sandbox.client(
        "exec",
        "--no-identity-endpoint",
        "--",
        sys.executable,
        "-c",
        f"import os; print('{TOKEN_CREDENTIALS_VAR}' in os.environ)",
    )
    assert without_endpoint.stdout.strip() == "False"


# -- exec during an outage -------------------------------------------------------------


def test_exec_with_a_token_env_needs_entra(edge: Edge) -> None:
    edge.emulator.set_faults(outage=True)
    blocked = edge.run_app("hold_session.py")
    assert blocked.returncode == 4, describe(blocked)
    assert "--no-token-env" in blocked.stderr  # the way out is named


def test_exec_no_token_env_starts_during_an_outage(edge: Edge) -> None:
    edge.emulator.set_faults(outage=True)
    proc = subprocess.Popen(
        [
            helper_bin("agentid-helper"),
            "exec",
            "--profile",
            PROFILE,
            "--no-token-env",
            "--",
            sys.executable,
            str(APPS / "app_token_on_request.py"),
            GRAPH_SCOPE,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=edge.sandbox.env,
        cwd=edge.sandbox.root,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        started = json.loads(proc.stdout.readline() or "{}")
        assert started == {
            "started": True,
            "token_var": False,
            "endpoint": True,
            "token_credentials": TOKEN_CREDENTIALS_VALUE,
        }
        edge.emulator.clear_faults()
        proc.stdin.write("token\n")
        proc.stdin.flush()
        report = json.loads(proc.stdout.readline() or "{}")
        proc.stdin.close()
        assert proc.wait(timeout=APP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert report["claims"]["appid"] == edge.emulator.info["agent_identity_app_id"]
    assert report["claims"]["aud"] == GRAPH_RESOURCE


def test_no_token_env_refuses_what_would_leave_nothing(edge: Edge) -> None:
    both = edge.sandbox.client("exec", "--no-token-env", "--no-identity-endpoint", "--", "true")
    assert both.returncode == 2
    assert "leave CMD no token" in both.stderr
    named = edge.sandbox.client("exec", "--no-token-env", "--env-var", "TOKEN", "--", "true")
    assert named.returncode == 2
