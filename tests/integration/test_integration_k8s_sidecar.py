"""deploy/kubernetes: the manifests validate, and the sidecar works as written.

The sidecar's exact command line (from deployment.yaml) runs against the
emulator with the ConfigMap's config.toml, its volume mounts mapped to
private directories, and the environment the AKS workload identity webhook
would inject (pointing at the emulator). The app container's environment
(also from deployment.yaml) then drives unchanged Azure SDK programs and
the client over the shared socket. Only what a cluster provides is stood in
for: the mounts, the webhook's variables, a free port for 8081, the
emulator's CA for Entra's public one, and the agent's app id in the
ConfigMap.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from graph_stub import GRAPH_RESOURCE
from helper_stack import DaemonProcess, HelperSandbox, describe, helper_bin
from token_gate import TokenGate
from tooling import ROOT

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy" / "kubernetes"
APPS = Path(__file__).parent / "sdk_apps"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
# Native sidecars (initContainers with restartPolicy: Always) need 1.29.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
PLACEHOLDER_AGENT = "66666666-7777-8888-9999-000000000000"
MANIFEST_PORT = 8081


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in {DEPLOY}")


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifests_validate(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_mistakes() -> None:
    deployment = find("Deployment", "agent-app")
    sidecar = container(deployment["spec"]["template"]["spec"], "agentid-helper")
    sidecar["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_manifests_fit_together() -> None:
    deployment = find("Deployment", "agent-app")
    pod = deployment["spec"]["template"]["spec"]
    meta = deployment["spec"]["template"]["metadata"]
    assert meta["labels"]["azure.workload.identity/use"] == "true"
    assert meta["annotations"]["azure.workload.identity/skip-containers"] == "app"
    assert pod["serviceAccountName"] == find("ServiceAccount", "agent-app")["metadata"]["name"]
    sidecar, app = container(pod, "agentid-helper"), container(pod, "app")
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar, started before the app
    config = find("ConfigMap", "agentid-helper-config")["data"]["config.toml"]
    assert f'managed_identity_listen = "127.0.0.1:{MANIFEST_PORT}"' in config
    env = {e["name"]: e for e in app["env"]}
    assert env["IDENTITY_ENDPOINT"]["value"] == f"http://127.0.0.1:{MANIFEST_PORT}/msi/token"
    assert env["IDENTITY_HEADER"]["valueFrom"]["secretKeyRef"]["name"] == "agentid-identity-header"
    assert not any(name.startswith("AZURE_") for name in env)
    header_mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "identity-header")
    assert f'managed_identity_header_file = "{header_mount["mountPath"]}/header"' in config
    socket_mounts = {
        m["mountPath"]
        for c in (sidecar, app)
        for m in c["volumeMounts"]
        if m["name"] == "agentid-socket"
    }
    assert len(socket_mounts) == 1  # the same path in both containers
    assert pod["securityContext"]["runAsUser"] == 10001


def test_manifests_agree_with_the_file_trust_rule() -> None:
    """The header file is a secret: never readable by others, readable by the uid.

    kubelet makes Secret files root's with ``defaultMode``; with ``fsGroup`` it
    adds group read for that group. The daemon accepts group read only on a
    root file of its own primary group, so fsGroup must equal runAsGroup.
    """
    pod = find("Deployment", "agent-app")["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["fsGroup"] == context["runAsGroup"]
    volume = next(v for v in pod["volumes"] if v["name"] == "identity-header")
    assert volume["secret"]["defaultMode"] & 0o077 == 0
    sidecar = container(pod, "agentid-helper")
    for mount in sidecar["volumeMounts"]:
        if mount["name"] in ("identity-header", "agentid-config"):
            assert mount["readOnly"] is True  # its directory's mode bits do not matter then


def test_containerfile_runs_the_manifests_command() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    lines = {
        ln.split(" ", 1)[0]: ln.split(" ", 1)[1]
        for ln in text.splitlines()
        if ln.startswith(("ENTRYPOINT ", "CMD ", "USER "))
    }
    argv = json.loads(lines["ENTRYPOINT"]) + json.loads(lines["CMD"])
    pod = find("Deployment", "agent-app")["spec"]["template"]["spec"]
    assert argv == container(pod, "agentid-helper")["command"]
    assert (
        lines["USER"] == f"{pod['securityContext']['runAsUser']}:"
        f"{pod['securityContext']['runAsGroup']}"
    )
    assert "--uid 10001" in text


# -- the sidecar, run as written ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pod:
    sidecar_env: dict[str, str]
    app_env: dict[str, str]
    header: str
    port: int
    daemon: DaemonProcess
    sandbox: HelperSandbox

    def run_in_app_container(
        self, argv: list[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run *argv* with the app container's environment, as the pod would."""
        return subprocess.run(
            argv,
            env=self.app_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def pod(emulator: Any, tmp_path: Path) -> Iterator[Pod]:
    info = emulator.info
    spec = find("Deployment", "agent-app")["spec"]["template"]["spec"]
    sidecar, app = container(spec, "agentid-helper"), container(spec, "app")
    port = free_port()

    # Volumes -> private directories, as the kubelet would mount them.
    mounts: dict[str, Path] = {}
    for volume in spec["volumes"]:
        path = tmp_path / "volumes" / volume["name"]
        path.mkdir(parents=True, mode=0o700)
        mounts[volume["name"]] = path

    def mapping(c: dict[str, Any]) -> list[tuple[str, str]]:
        return [(m["mountPath"], str(mounts[m["name"]])) for m in c["volumeMounts"]]

    config_text = find("ConfigMap", "agentid-helper-config")["data"]["config.toml"]
    config_text = config_text.replace(PLACEHOLDER_AGENT, info["agent_identity_app_id"])
    config_text = config_text.replace(f"127.0.0.1:{MANIFEST_PORT}", f"127.0.0.1:{port}")
    for mount_path, local in mapping(sidecar):  # paths inside the container
        config_text = config_text.replace(f'"{mount_path}/', f'"{local}/')
    (mounts["agentid-config"] / "config.toml").write_text(config_text)
    header = secrets.token_urlsafe(32)
    # As kubelet lays out a Secret volume: header -> ..data/header, ..data ->
    # a timestamped directory; defaultMode 0400 plus fsGroup's group read.
    stamp = mounts["identity-header"] / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(mode=0o755)
    (stamp / "header").write_text(header)
    (stamp / "header").chmod(0o440)
    (mounts["identity-header"] / "..data").symlink_to(stamp.name)
    header_file = mounts["identity-header"] / "header"
    header_file.symlink_to("..data/header")

    def translate(text: str, c: dict[str, Any]) -> str:
        for mount_path, local in mapping(c):
            if text == mount_path or text.startswith(mount_path + "/"):
                return local + text[len(mount_path) :]
        return text.replace(f"127.0.0.1:{MANIFEST_PORT}", f"127.0.0.1:{port}")

    def plain_env(c: dict[str, Any]) -> dict[str, str]:
        return {e["name"]: translate(e["value"], c) for e in c.get("env", []) if "value" in e}

    base = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),
    }
    # What the AKS workload identity webhook injects into the sidecar (the
    # emulator standing in for Entra, its CA for the public one).
    webhook = {
        "AZURE_CLIENT_ID": info["blueprint_app_id"],
        "AZURE_TENANT_ID": info["tenant_id"],
        "AZURE_AUTHORITY_HOST": info["authority_host"] + "/",
        "AZURE_FEDERATED_TOKEN_FILE": info["blueprint_federated_token_file"],
        "REQUESTS_CA_BUNDLE": info["ca_bundle"],
    }
    sidecar_env = {**base, **webhook, **plain_env(sidecar)}
    argv = [translate(arg, sidecar) for arg in sidecar["command"] + sidecar.get("args", [])]
    argv[0] = helper_bin(argv[0])

    app_env = {**base, **plain_env(app), "HOME": str(tmp_path / "app-home")}
    (tmp_path / "app-home").mkdir()
    secret_refs = [e for e in app["env"] if "valueFrom" in e]
    assert [e["name"] for e in secret_refs] == ["IDENTITY_HEADER"]
    app_env["IDENTITY_HEADER"] = header_file.read_text()

    sandbox = HelperSandbox(tmp_path, dict(sidecar_env))
    daemon = DaemonProcess(sandbox, argv)
    daemon.start()
    try:
        yield Pod(sidecar_env, app_env, header, port, daemon, sandbox)
    finally:
        daemon.stop()
    daemon.assert_log_free_of([header])


def test_sidecar_serves_the_app_containers_sdks(pod: Pod, emulator: Any) -> None:
    gate = TokenGate.from_emulator(emulator.info, audience=GRAPH_RESOURCE)
    served = []
    for app in ("app_managed_identity.py", "app_default_credential.py"):
        proc = pod.run_in_app_container(
            [sys.executable, str(APPS / app), f"{GRAPH_RESOURCE}/.default"], timeout=90
        )
        assert proc.returncode == 0, describe(proc)
        served.append(json.loads(proc.stdout.splitlines()[0]))
    assert served[0]["sha256"] == served[1]["sha256"]  # one cached token
    assert served[0]["claims"]["appid"] == emulator.info["agent_identity_app_id"]

    # Scripts in the app container reach the daemon through the shared socket.
    got = pod.run_in_app_container(
        [helper_bin("agentid-helper"), "get", "--format", "json"], timeout=60
    )
    assert got.returncode == 0, describe(got)
    token = json.loads(got.stdout)["access_token"]
    claims = gate.verify(token)
    assert claims["appid"] == emulator.info["agent_identity_app_id"]
    assert claims["xms_par_app_azp"] == emulator.info["blueprint_app_id"]
    pod.daemon.assert_log_free_of([token])


def test_sidecar_probes_and_refusals(pod: Pod) -> None:
    # The liveness probe's command, with the sidecar's environment.
    spec = find("Deployment", "agent-app")["spec"]["template"]["spec"]
    probe = container(spec, "agentid-helper")["livenessProbe"]["exec"]["command"]
    proc = subprocess.run(
        [helper_bin(probe[0]), *probe[1:]],
        env=pod.sidecar_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, describe(proc)
    status = json.loads(proc.stdout)["daemon"]["managed_identity"]
    assert (status["endpoint"], status["sessions"]) == (
        f"http://127.0.0.1:{pod.port}/msi/token",
        1,
    )
    assert status["peers"]["peer_check"] == "sock_diag"  # the app container's uid is checked
    assert pod.header not in proc.stdout
    # The fixed session still needs its header.
    url = f"http://127.0.0.1:{pod.port}/msi/token?resource={GRAPH_RESOURCE}&api-version=2019-08-01"
    for header in (None, pod.header[::-1]):
        req = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": header} if header else {})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 401
    ok = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": pod.header})
    with urllib.request.urlopen(ok, timeout=30) as resp:
        assert resp.status == 200


def test_sidecar_with_a_taken_port_exits_5(pod: Pod, tmp_path: Path) -> None:
    """A second sidecar on the same address cannot start: exit 5, a clear message."""
    spec = find("Deployment", "agent-app")["spec"]["template"]["spec"]
    argv = container(spec, "agentid-helper")["command"]
    config = pod.sidecar_env  # same config file, same port
    other_socket = tmp_path / "second" / "agentid-helper.sock"
    other_socket.parent.mkdir(mode=0o700)
    args = [helper_bin(argv[0])]
    it = iter(argv[1:])
    for arg in it:
        if arg == "--socket":
            args += [arg, str(other_socket)]
            next(it)
        elif arg == "--config":
            args += [arg, str(tmp_path / "volumes" / "agentid-config" / "config.toml")]
            next(it)
        else:
            args.append(arg)
    proc = subprocess.run(
        args, env=config, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 5, shlex.join(args) + "\n" + proc.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{pod.port}" in proc.stderr


def test_exec_sessions_beside_the_sidecar_get_their_own_port(pod: Pod) -> None:
    """`agentid-helper exec` next to the sidecar session: its own port and header."""
    show = (
        "import json, os; print(json.dumps({k: os.environ[k] for k in "
        "('IDENTITY_ENDPOINT', 'IDENTITY_HEADER')}))"
    )
    proc = subprocess.run(
        [helper_bin("agentid-helper"), "exec", "--", sys.executable, "-c", show],
        env=pod.sidecar_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, describe(proc)
    exported = json.loads(proc.stdout)
    assert exported["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
    assert exported["IDENTITY_ENDPOINT"] != f"http://127.0.0.1:{pod.port}/msi/token"
    assert exported["IDENTITY_HEADER"] != pod.header
