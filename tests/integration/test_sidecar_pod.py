"""The example pod of deploy/kubernetes/, run in a real container engine (podman).

The sidecar image is built from deploy/kubernetes/Containerfile on a Debian
base made offline (tests/support/podman_engine.py: debootstrap, cached),
from the project's wheel and its dependencies' (tests/support/wheelhouse.py); the app
image from the same base with azure-identity and the client, installed
offline the same way. ``podman kube play`` then runs deployment.yaml and
configmap.yaml, after the transformation :func:`podman_variant` documents
(deploy/kubernetes/README.md, "Trying the pod with podman"): what podman 4.3
lacks (native sidecars, Secret volumes, fsGroup, pod-level runAsUser) and
what a cluster provides (the workload identity webhook, Entra) are stood in
for, nothing else. The emulator runs outside the pod on the host's loopback;
the pod shares the host's network (``hostNetwork: true``), on free ports.

The app container gets the agent identity's tokens three ways: Microsoft's
Agent ID sidecar API, the managed identity endpoint (an unchanged
azure-identity program) and the shared Unix socket (``agentid-helper get``).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from graph_stub import GRAPH_RESOURCE
from podman_engine import Podman, PodmanError, base_tarball
from token_gate import TokenGate
from tooling import ROOT, require_tools
from wheelhouse import fill_wheelhouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

DEPLOY = ROOT / "deploy" / "kubernetes"
APPS = Path(__file__).parent / "sdk_apps"
SIDECAR_IMAGE = "localhost/agentid-helper:test"
APP_IMAGE = "localhost/agent-app:test"
BASE_IMAGE = "localhost/agentid-test-base:bookworm"
#: The example's placeholders and fixed ports (the test's pod uses free ones:
#: it shares the host's network with whatever else runs here).
PLACEHOLDER_AGENT = "66666666-7777-8888-9999-000000000000"
MI_PORT, SIDECAR_API_PORT = 8081, 5000
UID = 10001
EXEC_TIMEOUT_S = 90
READY_TIMEOUT_S = 60
#: Where the AKS workload identity webhook projects the service account token.
WEBHOOK_TOKEN_DIR = "/var/run/secrets/azure/tokens"
TEST_CA_DIR = "/etc/agentid-test-ca"

#: The app image: Debian's python3, a venv with azure-identity, requests and
#: this project's client, installed offline from the wheelhouse; the SDK
#: programs of tests/integration/sdk_apps. It idles until the test execs in.
APP_CONTAINERFILE = f"""\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN --mount=type=bind,source=wheels,target=/tmp/wheels \\
    python3 -m venv /opt/app \\
 && /opt/app/bin/python -m pip install --no-cache-dir --disable-pip-version-check \\
        --no-index --find-links /tmp/wheels agentid-helper azure-identity requests
COPY apps/ /opt/app/apps/
USER {UID}:{UID}
ENV PATH=/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONDONTWRITEBYTECODE=1
CMD ["sleep", "infinity"]
"""


def manifests() -> dict[str, dict[str, Any]]:
    """deploy/kubernetes's documents by kind."""
    docs = [
        doc
        for path in sorted(DEPLOY.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    return {doc["kind"]: doc for doc in docs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Standins:
    """What the cluster would provide, as the test provides it."""

    images: dict[str, str]
    mi_port: int
    sidecar_api_port: int
    agent_app_id: str
    webhook_env: dict[str, str]
    header_dir: Path
    token_dir: Path
    ca_dir: Path


def podman_variant(deployment: dict[str, Any], configmap: dict[str, Any], s: Standins) -> str:
    """deployment.yaml and configmap.yaml as podman 4.3's ``kube play`` runs them.

    - Native sidecars (an init container with ``restartPolicy: Always``)
      become ordinary containers, listed first: podman runs init containers
      to completion before the others, so the daemon would block the pod.
    - The pod's ``runAsUser``/``runAsGroup`` are copied into each container
      (podman reads them only there), as Kubernetes applies them.
    - The identity-header Secret volume becomes a hostPath directory laid out
      as kubelet lays out a Secret with ``defaultMode: 0400`` and ``fsGroup``
      (``..data`` symlinks, 0440 root:10001): podman 4.3 crashes on Secret
      volumes and ignores fsGroup. The ``secretKeyRef`` env stays: podman
      secrets serve it.
    - ``hostNetwork: true`` and free ports for 8081 and 5000 (config.toml,
      the env, the probes; the image's HEALTHCHECK through
      AGENTID_HELPER_HEALTHZ_URL): the emulator is on the host's loopback.
    - The workload identity webhook's variables and projected token (the
      emulator's federated token) and the emulator's CA (REQUESTS_CA_BUNDLE)
      in the sidecar; the test's images; the emulator's agent identity in
      the ConfigMap.
    """
    deployment = copy.deepcopy(deployment)
    configmap = copy.deepcopy(configmap)
    pod = deployment["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    # podman 4.3 removes a "once" init container as soon as its exit code is
    # in, sometimes before its state says it stopped, and then fails the
    # whole pod; "always" init containers are kept. podman reads this
    # annotation from the Deployment's own metadata, not the template's.
    annotations = deployment["metadata"].setdefault("annotations", {})
    annotations["io.podman.annotations.init.container.type"] = "always"
    natives = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    pod["initContainers"] = [c for c in pod.get("initContainers", []) if c not in natives]
    for c in natives:
        del c["restartPolicy"]
    pod["containers"] = natives + pod["containers"]
    context = pod.get("securityContext", {})

    def ports(text: str) -> str:
        return text.replace(f"127.0.0.1:{MI_PORT}", f"127.0.0.1:{s.mi_port}").replace(
            f"127.0.0.1:{SIDECAR_API_PORT}", f"127.0.0.1:{s.sidecar_api_port}"
        )

    for c in [*pod["initContainers"], *pod["containers"]]:
        c["image"] = s.images[c["image"]]
        sc = c.setdefault("securityContext", {})
        for key in ("runAsUser", "runAsGroup"):
            if key in context:
                sc.setdefault(key, context[key])
        for e in c.get("env", []):
            if "value" in e:
                e["value"] = ports(e["value"])
        probe = c.get("startupProbe", {}).get("tcpSocket")
        if probe and probe.get("port") == MI_PORT:
            probe["port"] = s.mi_port
    sidecar = natives[0]
    sidecar["env"] += [
        {"name": k, "value": v}
        for k, v in {
            **s.webhook_env,
            "AGENTID_HELPER_HEALTHZ_URL": f"http://127.0.0.1:{s.sidecar_api_port}/healthz",
        }.items()
    ]
    sidecar["volumeMounts"] += [
        {"name": "azure-identity-token", "mountPath": WEBHOOK_TOKEN_DIR, "readOnly": True},
        {"name": "test-ca", "mountPath": TEST_CA_DIR, "readOnly": True},
    ]
    volumes = []
    for volume in pod["volumes"]:
        if "secret" in volume:
            volume = {"name": volume["name"], "hostPath": {"path": str(s.header_dir)}}
        volumes.append(volume)
    volumes += [
        {"name": "azure-identity-token", "hostPath": {"path": str(s.token_dir)}},
        {"name": "test-ca", "hostPath": {"path": str(s.ca_dir)}},
    ]
    for v in volumes:
        if "hostPath" in v:
            v["hostPath"]["type"] = "Directory"
    pod["volumes"] = volumes
    config = configmap["data"]["config.toml"]
    configmap["data"]["config.toml"] = ports(config.replace(PLACEHOLDER_AGENT, s.agent_app_id))
    return yaml.safe_dump_all([configmap, deployment], sort_keys=False)


def kubelet_secret_dir(directory: Path, files: dict[str, str]) -> Path:
    """A Secret volume as kubelet writes it with ``defaultMode: 0400`` and
    ``fsGroup: 10001``: ``name -> ..data/name``, ``..data -> ..<timestamp>``,
    files 0440 root:10001."""
    stamp = directory / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
        os.chown(stamp / name, 0, UID)
        (stamp / name).chmod(0o440)
        (directory / name).symlink_to(f"..data/{name}")
    (directory / "..data").symlink_to(stamp.name)
    os.chmod(stamp, 0o755)
    os.chmod(directory, 0o755)
    return directory


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    require_tools("podman", "runc", "debootstrap", "catatonit")
    podman = Podman(tmp_path_factory.mktemp("podman"))
    try:
        yield podman
    finally:
        podman.reset()


@pytest.fixture(scope="module")
def images(engine: Podman, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The sidecar and app images, built offline on the cached Debian base."""
    engine.import_base(base_tarball(), BASE_IMAGE)
    sidecar_ctx = tmp_path_factory.mktemp("sidecar-context")
    engine.build_sidecar_image(sidecar_ctx, SIDECAR_IMAGE, BASE_IMAGE)
    app_ctx = tmp_path_factory.mktemp("app-context")
    shutil.copytree(sidecar_ctx, app_ctx / "wheels")
    fill_wheelhouse(app_ctx / "wheels", ["azure-identity", "requests"])
    shutil.copytree(APPS, app_ctx / "apps", ignore=shutil.ignore_patterns("__pycache__"))
    (app_ctx / "Containerfile").write_text(APP_CONTAINERFILE)
    engine.run(
        "build",
        "--network",
        "none",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        APP_IMAGE,
        str(app_ctx),
    )
    spec = manifests()["Deployment"]["spec"]["template"]["spec"]
    named = {c["image"] for c in [*spec["initContainers"], *spec["containers"]]}
    return {name: APP_IMAGE if "agent-app" in name else SIDECAR_IMAGE for name in named}


@dataclass
class Pod:
    engine: Podman
    name: str
    header: str
    standins: Standins

    def container(self, name: str) -> str:
        """podman's name for the pod's container *name* (``<pod>-<container>``)."""
        return f"{self.name}-{name}"

    def exec(self, container: str, *argv: str, check: bool = True) -> Any:
        return self.engine.run(
            "exec", self.container(container), *argv, timeout=EXEC_TIMEOUT_S, check=check
        )

    def sidecar_log(self) -> str:
        done = self.engine.run("logs", self.container("agentid-helper"), timeout=30)
        return str(done.stdout + done.stderr)


@pytest.fixture(scope="module")
def pod(
    engine: Podman,
    images: dict[str, str],
    emulator: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pod]:
    info = emulator.info
    work = tmp_path_factory.mktemp("pod")
    header = secrets.token_urlsafe(32)
    token_dir = work / "webhook-token"
    token_dir.mkdir()
    shutil.copy(info["blueprint_federated_token_file"], token_dir / "azure-identity-token")
    (token_dir / "azure-identity-token").chmod(0o644)
    ca_dir = work / "ca"
    ca_dir.mkdir()
    shutil.copy(info["ca_bundle"], ca_dir / "ca.pem")
    (ca_dir / "ca.pem").chmod(0o644)
    for d in (token_dir, ca_dir):
        d.chmod(0o755)
    standins = Standins(
        images=images,
        mi_port=free_port(),
        sidecar_api_port=free_port(),
        agent_app_id=info["agent_identity_app_id"],
        webhook_env={
            "AZURE_CLIENT_ID": info["blueprint_app_id"],
            "AZURE_TENANT_ID": info["tenant_id"],
            "AZURE_AUTHORITY_HOST": info["authority_host"] + "/",
            "AZURE_FEDERATED_TOKEN_FILE": f"{WEBHOOK_TOKEN_DIR}/azure-identity-token",
            "REQUESTS_CA_BUNDLE": f"{TEST_CA_DIR}/ca.pem",
        },
        header_dir=kubelet_secret_dir(work / "identity-header", {"header": header}),
        token_dir=token_dir,
        ca_dir=ca_dir,
    )
    docs = manifests()
    kube = work / "pod.yaml"
    kube.write_text(podman_variant(docs["Deployment"], docs["ConfigMap"], standins))
    # podman 4.3 reads a secretKeyRef's secret as a JSON map of base64 values.
    secret_key = next(
        e["valueFrom"]["secretKeyRef"]
        for c in docs["Deployment"]["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    )
    engine.run(
        "secret",
        "create",
        secret_key["name"],
        "-",
        input=json.dumps({secret_key["key"]: base64.b64encode(header.encode()).decode()}),
    )
    engine.run("kube", "play", str(kube))
    name = f"{docs['Deployment']['metadata']['name']}-pod-0"
    listed = engine.run("pod", "ps", "--format", "{{.Name}}").stdout.split()
    assert listed, "kube play made no pod"
    name = name if name in listed else listed[0]
    made = Pod(engine, name, header, standins)
    try:
        wait_ready(made)
        yield made
    finally:
        log = made.sidecar_log() if listed else ""
        # podman.reset() at the engine's teardown removes whatever this leaves.
        engine.run("pod", "rm", "--force", "--time", "5", name, check=False, timeout=120)
        assert header not in log, "the identity header reached the sidecar's log"


def image_healthcheck(engine: Podman, image: str) -> list[str]:
    """The image's HEALTHCHECK command (``CMD`` form), from ``podman image inspect``."""
    inspected = json.loads(engine.run("image", "inspect", image).stdout)[0]
    health = inspected["Config"].get("Healthcheck") or inspected.get("Healthcheck") or {}
    test = list(health.get("Test") or [])
    assert test[:1] == ["CMD"], f"{image} has no HEALTHCHECK CMD: {health}"
    return test[1:]


def wait_ready(pod: Pod) -> None:
    """Until the image's HEALTHCHECK command (the sidecar API's /healthz) passes in the pod."""
    probe = image_healthcheck(pod.engine, SIDECAR_IMAGE)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        done = pod.exec("agentid-helper", *probe, check=False)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the sidecar did not become healthy:\n{done.stderr[-2000:]}\n"
                f"{pod.sidecar_log()[-4000:]}"
            )
        time.sleep(1)


def test_the_app_container_gets_tokens_three_ways(pod: Pod, emulator: Any) -> None:
    gate = TokenGate.from_emulator(emulator.info, audience=GRAPH_RESOURCE)
    agent = emulator.info["agent_identity_app_id"]
    blueprint = emulator.info["blueprint_app_id"]
    seen: list[str] = []

    # (a) Microsoft's Agent ID sidecar API, as an app written for its container calls it.
    ask = (
        "import sys, requests; r = requests.get(sys.argv[1], timeout=30); r.raise_for_status(); "
        "print(r.json()['authorizationHeader'])"
    )
    url = (
        f"http://127.0.0.1:{pod.standins.sidecar_api_port}/AuthorizationHeaderUnauthenticated/Graph"
    )
    done = pod.exec("app", "python3", "-c", ask, url)
    scheme, token = done.stdout.strip().split(" ", 1)
    assert scheme == "Bearer"
    claims = gate.verify(token)
    assert (claims["appid"], claims["xms_par_app_azp"]) == (agent, blueprint)
    seen.append(token)

    # (b) The managed identity endpoint, from an unchanged azure-identity program.
    done = pod.exec(
        "app", "python3", "/opt/app/apps/app_managed_identity.py", f"{GRAPH_RESOURCE}/.default"
    )
    served = json.loads(done.stdout.splitlines()[0])
    assert served["claims"]["appid"] == agent

    # (c) The shared Unix socket, with the client.
    done = pod.exec("app", "agentid-helper", "get", "--format", "json")
    token = json.loads(done.stdout)["access_token"]
    claims = gate.verify(token)
    assert claims["appid"] == agent
    seen.append(token)

    log = pod.sidecar_log()
    for token in seen:
        assert token.rsplit(".", 1)[1] not in log, "a token reached the sidecar's log"


def test_the_sidecar_image_runs_as_specified(pod: Pod) -> None:
    sidecar = pod.container("agentid-helper")
    inspected = json.loads(pod.engine.run("inspect", sidecar).stdout)[0]
    assert inspected["Config"]["User"].split(":")[0] == str(UID)
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    done = pod.exec("agentid-helper", "id", "-u")
    assert done.stdout.strip() == str(UID)
    done = pod.exec("agentid-helper", "touch", "/opt/agentid-helper/written", check=False)
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    done = pod.exec("agentid-helper", "python3", "-c", "import agentid_emulator", check=False)
    assert done.returncode != 0 and "No module named 'agentid_emulator'" in done.stderr
    done = pod.exec("agentid-helper", "python3", "-c", "import agentid_daemon, agentid_client")
    assert done.returncode == 0

    image = json.loads(pod.engine.run("image", "inspect", SIDECAR_IMAGE).stdout)[0]
    assert image["Config"]["User"] == f"{UID}:{UID}"
    assert "AGENTID_HELPER_HEALTHZ_URL" in " ".join(image_healthcheck(pod.engine, SIDECAR_IMAGE))
    # In the pod, podman turns the livenessProbe into the container's health
    # check (replacing the image's, whose command wait_ready ran): podman's
    # health machinery runs it.
    probe = manifests()["Deployment"]["spec"]["template"]["spec"]["initContainers"][1]
    liveness = " ".join(probe["livenessProbe"]["exec"]["command"])
    health = inspected["Config"].get("Healthcheck") or {}
    assert liveness in " ".join(health.get("Test", [])), health
    done = pod.engine.run("healthcheck", "run", sidecar, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_podman_engine_refuses_loudly(tmp_path: Path) -> None:
    """A failing podman command raises with its argv and output, not a bare code."""
    engine = Podman(tmp_path / "podman")
    try:
        with pytest.raises(PodmanError, match="no-such-subcommand"):
            engine.run("no-such-subcommand", timeout=30)
    finally:
        engine.reset()
