"""kubectl -> exec plugin ``agentid-helper kubectl-credential`` -> daemon -> emulator.

The kubeconfig's user entry is exactly what ``agentid-helper kubeconfig-user``
prints; the cluster is the fake API server, which verifies the Entra token
(signature against the emulator's JWKS, issuer, expiry, audience = the AKS
server app id the profile asks for).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helper_stack import (
    KUBE_RESOURCE,
    DaemonProcess,
    HelperSandbox,
    describe,
    require_tools,
)
from kube_api_server import KubeApiServer
from tls_certs import ServerTls
from token_gate import TokenGate

pytestmark = pytest.mark.integration

PROFILE = "kube"
USER = "agentid-kube"
KUBECTL_TIMEOUT_S = 60


def kubeconfig_with_user(path: Path, users_yaml: str, *, server: str, ca: Path) -> Path:
    """A full kubeconfig around the ``users:`` entry printed by ``kubeconfig-user``.

    The printed entry is used verbatim (it is what a user pastes); the rest is
    written as YAML text around it, since the entry may be YAML or JSON.
    """
    body = users_yaml.strip("\n")
    stripped = body.lstrip()
    if stripped.startswith("{"):
        users = json.loads(stripped)
        users = users.get("users", [users]) if isinstance(users, dict) else users
        body = "users: " + json.dumps(users)
    elif stripped.startswith("- "):
        body = "users:\n" + body
    elif not stripped.startswith("users:"):
        body = "users:\n- " + "\n  ".join(body.splitlines())
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "preferences: {}\n"
        "clusters:\n"
        f"- name: fake\n  cluster:\n    server: {json.dumps(server)}\n"
        f"    certificate-authority: {json.dumps(str(ca))}\n"
        "contexts:\n"
        f"- name: fake\n  context:\n    cluster: fake\n    user: {json.dumps(USER)}\n"
        "current-context: fake\n" + body + "\n"
    )
    path.chmod(0o600)
    return path


def kubectl(
    sandbox: HelperSandbox,
    kubeconfig: Path,
    *args: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        env=sandbox.env,
        cwd=sandbox.root,
        timeout=KUBECTL_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def _by_leg(emulator: Any) -> dict[str, int]:
    return dict(emulator.stats()["token_requests"]["by_leg"])


@dataclass
class KubeSetup:
    api: KubeApiServer  # not started: ``with setup.api:``
    gate: TokenGate
    kubeconfig: Path
    daemon: DaemonProcess
    users_entry: str  # stdout of ``kubeconfig-user``

    def write_kubeconfig(self, server: str, ca: Path) -> Path:
        return kubeconfig_with_user(self.kubeconfig, self.users_entry, server=server, ca=ca)


@pytest.fixture
def kube(
    emulator: Any,
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
    server_tls: ServerTls,
    tmp_path: Path,
) -> Iterator[KubeSetup]:
    require_tools("kubectl")
    info = emulator.info
    sandbox.configure_one_profile(info, PROFILE, resource=KUBE_RESOURCE, default_profile=None)
    daemon = start_daemon()
    gate = TokenGate.from_emulator(info, audience=KUBE_RESOURCE)
    printed = sandbox.client("kubeconfig-user", "--profile", PROFILE, "--name", USER)
    assert printed.returncode == 0, describe(printed)
    api = KubeApiServer(server_tls, gate)
    try:
        yield KubeSetup(api, gate, tmp_path / "kubeconfig", daemon, printed.stdout)
    finally:
        api.stop()
    daemon.assert_log_free_of([*gate.seen, info["blueprint_secret"]])


def test_kubeconfig_user_entry_runs_this_helper(
    kube: KubeSetup, sandbox: HelperSandbox, server_tls: ServerTls
) -> None:
    path = kube.write_kubeconfig("https://127.0.0.1:1", server_tls.ca_file)
    view = kubectl(sandbox, path, "config", "view", "-o", "json")
    assert view.returncode == 0, view.stderr
    users = {u["name"]: u["user"] for u in json.loads(view.stdout)["users"]}
    exec_cfg = users[USER]["exec"]
    assert exec_cfg["apiVersion"].startswith("client.authentication.k8s.io/")
    assert Path(exec_cfg["command"]).name == "agentid-helper"
    assert Path(exec_cfg["command"]).is_absolute() or exec_cfg["command"] == "agentid-helper"
    args = exec_cfg.get("args") or []
    assert "kubectl-credential" in args
    assert PROFILE in args


def test_kubectl_get_namespaces_through_the_helper(
    kube: KubeSetup, sandbox: HelperSandbox, server_tls: ServerTls, emulator: Any
) -> None:
    gate = kube.gate
    with kube.api as api:
        cfg = kube.write_kubeconfig(api.url, server_tls.ca_file)

        table = kubectl(sandbox, cfg, "get", "namespaces")
        assert table.returncode == 0, table.stderr
        assert "agentid-demo" in table.stdout
        assert "Active" in table.stdout
        first = gate.last_accepted
        assert gate.verify(first, record=False)["aud"] == KUBE_RESOURCE

        # A second kubectl process runs the plugin again and gets the cached token.
        before = _by_leg(emulator)
        names = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert names.returncode == 0, names.stderr
        assert "namespace/agentid-demo" in names.stdout.split()
        assert gate.last_accepted == first
        assert _by_leg(emulator).get("autonomous_app", 0) == before.get("autonomous_app", 0)

        # Expired/revoked: the API server refuses the old token and the daemon
        # has forgotten it; kubectl runs the plugin, which gets a fresh one.
        flushed = sandbox.client("flush", "--all")
        assert flushed.returncode == 0, describe(flushed)
        gate.reject(first)
        again = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert again.returncode == 0, again.stderr
        assert "namespace/agentid-demo" in again.stdout.split()
        fresh = gate.last_accepted
        assert fresh != first
        assert _by_leg(emulator).get("autonomous_app", 0) > before.get("autonomous_app", 0)


def test_kubectl_after_server_side_revocation_recovers_with_flush(
    kube: KubeSetup, sandbox: HelperSandbox, server_tls: ServerTls
) -> None:
    """A revocation the daemon cannot see: kubectl re-runs the plugin on 401 but
    gets the same cached token and fails clearly; ``flush`` is the way out."""
    gate = kube.gate
    with kube.api as api:
        cfg = kube.write_kubeconfig(api.url, server_tls.ca_file)
        ok = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert ok.returncode == 0, ok.stderr
        revoked = gate.last_accepted
        gate.reject(revoked)

        refused = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert refused.returncode != 0
        assert "You must be logged in to the server" in refused.stderr
        assert revoked not in refused.stderr + refused.stdout

        flushed = sandbox.client("flush", "--all")
        assert flushed.returncode == 0, describe(flushed)
        recovered = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert recovered.returncode == 0, recovered.stderr
        assert gate.last_accepted != revoked


def test_kubectl_credential_is_a_valid_exec_credential(
    kube: KubeSetup, sandbox: HelperSandbox
) -> None:
    gate = kube.gate
    result = sandbox.client(
        "kubectl-credential",
        "--profile",
        PROFILE,
        env={
            "KUBERNETES_EXEC_INFO": json.dumps(
                {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "kind": "ExecCredential",
                    "spec": {"interactive": False},
                }
            ),
        },
    )
    assert result.returncode == 0, describe(result)
    cred = json.loads(result.stdout)
    assert cred["kind"] == "ExecCredential"
    assert cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert gate.verify(cred["status"]["token"], record=False)["aud"] == KUBE_RESOURCE
    assert cred["status"]["expirationTimestamp"].endswith("Z")
