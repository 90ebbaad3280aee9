"""Microsoft's Agent ID sidecar API served by the daemon, against the emulator.

An app written against Microsoft's sidecar docs (sdk_apps/app_sidecar_docs.py)
runs unchanged; bad input gets the sidecar's status and a clear detail, and
the daemon keeps serving.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from graph_stub import GRAPH_RESOURCE, GraphStub
from helper_stack import DaemonProcess, HelperSandbox, helper_bin
from machine_users import MALLORY, require_user
from tls_certs import ServerTls
from token_gate import TokenGate
from two_uids import as_user

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "sdk_apps"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sidecar:
    url: str
    emulator: Any
    daemon: DaemonProcess
    graph: GraphStub


@pytest.fixture
def sidecar(
    emulator: Any,
    tmp_path: Path,
    server_tls: ServerTls,
) -> Iterator[Sidecar]:
    info = emulator.info
    bundle = tmp_path / "cas.pem"
    bundle.write_text(Path(emulator.ca_bundle).read_text() + Path(server_tls.ca_file).read_text())
    bundle.chmod(0o600)
    gate = TokenGate.from_emulator(info, audience=GRAPH_RESOURCE)
    with GraphStub(server_tls, gate) as graph:
        port = _free_port()
        env = {
            "AzureAd__Instance": emulator.authority_host + "/",
            "AzureAd__TenantId": emulator.tenant_id,
            "AzureAd__ClientId": emulator.blueprint_app_id,
            "AzureAd__ClientCredentials__0__SourceType": "ClientSecret",
            "AzureAd__ClientCredentials__0__ClientSecret": emulator.blueprint_secret,
            "DownstreamApis__Graph__BaseUrl": graph.url + "/v1.0",
            "DownstreamApis__Graph__RelativePath": "users",
            "DownstreamApis__Graph__Scopes__0": f"{GRAPH_RESOURCE}/.default",
            "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated": "true",
            "Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated": "true",
        }
        sandbox = HelperSandbox.create(tmp_path / "helper", env)
        sandbox.write_config(
            {
                "defaults": {"ca_bundle": str(bundle)},
                "daemon": {"sidecar_api_listen": f"127.0.0.1:{port}"},
            }
        )
        daemon = DaemonProcess(sandbox).start()
        try:
            yield Sidecar(f"http://localhost:{port}", emulator, daemon, graph)
        finally:
            daemon.stop()


def test_an_app_written_for_microsofts_sidecar_runs_unchanged(sidecar: Sidecar) -> None:
    emu = sidecar.emulator
    user_token = emu.user_token(emu.user_upn)
    proc = subprocess.run(
        [
            sys.executable,
            str(APPS / "app_sidecar_docs.py"),
            sidecar.url,
            emu.agent_identity_app_id,
            emu.agent_user_upn,
            user_token,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["healthz"] == 200
    assert report["autonomous"] == report["agent_user"] == report["obo"] == "Bearer "
    assert report["downstream_status"] == 200
    assert report["downstream_users"] == ["Adele Vance", "Megan Bowen"]
    assert report["validate"] == {"protocol": "Bearer"}
    assert report["validate_upn"] == emu.user_upn
    assert emu.agent_identity_app_id in sidecar.graph.callers
    sidecar.daemon.assert_log_free_of([user_token, emu.blueprint_secret])


def _problem(r: requests.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert words in body["detail"], body


def _resigned(token: str, key: Any, **claims: Any) -> str:
    header = jwt.get_unverified_header(token)
    body = {**jwt.decode(token, options={"verify_signature": False}), **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": header["kid"]})


def test_bad_input_gets_the_sidecars_status_and_the_daemon_keeps_serving(
    sidecar: Sidecar,
) -> None:
    emu = sidecar.emulator
    agent = emu.agent_identity_app_id
    url = sidecar.url
    r = requests.get(
        f"{url}/AuthorizationHeaderUnauthenticated/Nope", params={"AgentIdentity": agent}
    )
    _problem(r, 400, "Not able to resolve 'Nope'.")
    r = requests.get(
        f"{url}/AuthorizationHeaderUnauthenticated/Graph",
        params={"AgentIdentity": agent, "AgentUsername": emu.agent_user_upn,
                "AgentUserId": emu.agent_user_object_id},
    )  # fmt: skip
    _problem(r, 400, "mutually exclusive")
    # The authenticated route needs the caller's bearer (the unauthenticated
    # routes' default gates are covered in tests/daemon/sidecar_api).
    r = requests.get(f"{url}/AuthorizationHeader/Graph", params={"AgentIdentity": agent})
    _problem(r, 401, "Authorization")
    user_token = emu.user_token(emu.user_upn)
    signing = (Path(emu.state_dir) / "signing-key.pem").read_bytes()
    now = int(time.time())
    expired = _resigned(user_token, signing, exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    r = requests.get(f"{url}/Validate", headers={"Authorization": f"Bearer {expired}"})
    _problem(r, 401, "expired")
    forged = _resigned(user_token, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    r = requests.get(f"{url}/Validate", headers={"Authorization": f"Bearer {forged}"})
    _problem(r, 401, "signature")
    r = requests.get(
        f"{url}/AuthorizationHeaderUnauthenticated/Graph",
        params={"AgentIdentity": agent, "optionsOverride.FmiPath": "x"},
    )
    _problem(r, 400, "not supported")
    # Still serving.
    r = requests.get(
        f"{url}/AuthorizationHeaderUnauthenticated/Graph", params={"AgentIdentity": agent}
    )
    assert r.status_code == 200 and r.json()["authorizationHeader"].startswith("Bearer ")
    assert "no-store" in r.headers["cache-control"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to a test user")
@pytest.mark.usefixtures("test_users_turn")  # tests/support/two_uids.py
def test_another_uid_is_refused_before_a_byte_is_read(sidecar: Sidecar) -> None:
    require_user(MALLORY)
    port = int(sidecar.url.rsplit(":", 1)[1])
    probe = (
        "import http.client, sys\n"
        f"c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n"
        "try:\n"
        "    c.request('GET', '/healthz'); print(c.getresponse().status)\n"
        "except (OSError, http.client.HTTPException) as e:\n"
        "    print('refused', type(e).__name__); sys.exit(1)\n"
    )
    proc = subprocess.run(
        [*as_user(MALLORY), "/usr/bin/python3", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout.startswith("refused"), proc.stdout + proc.stderr
    # Our own uid is still served.
    assert requests.get(f"{sidecar.url}/healthz", timeout=10).text == "Healthy"


def test_an_unsupported_sidecar_variable_stops_the_daemon_with_one_line(tmp_path: Path) -> None:
    env = {"AzureAd__ClientCredentials__0__SourceType": "KeyVault"}
    sandbox = HelperSandbox.create(tmp_path / "helper", env)
    proc = subprocess.run(
        [helper_bin("agentid-helperd")],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 5, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "AzureAd__ClientCredentials__0__SourceType" in line and "KeyVault" in line


def test_downstream_obo_with_overrides_and_base_url_never_overridden(sidecar: Sidecar) -> None:
    emu = sidecar.emulator
    user_token = emu.user_token(emu.user_upn)
    r = requests.post(
        f"{sidecar.url}/DownstreamApi/Graph",
        params={
            "AgentIdentity": emu.agent_identity_app_id,
            "optionsOverride.RelativePath": "organization",
            "optionsOverride.BaseUrl": "https://attacker.example",
        },
        headers={"Authorization": f"Bearer {user_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == ["application/json"]
    assert json.loads(result["content"])["value"][0]["id"] == emu.tenant_id
    r = requests.post(
        f"{sidecar.url}/DownstreamApi/Graph",
        params={"AgentIdentity": emu.agent_identity_app_id, "optionsOverride.RelativePath": "nope"},
        headers={"Authorization": f"Bearer {user_token}"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["statusCode"] == 404  # the API's answer, relayed
