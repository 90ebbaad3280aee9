"""``kubeconfig-user --merge [FILE]`` with the real kubectl: the entry lands in
the user's kubeconfig beside what was there, atomically, mode kept, the
previous file kept as FILE.bak; then kubectl reaches the (fake) API server
through it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helper_stack import KUBE_RESOURCE, DaemonProcess, HelperSandbox, describe, require_tools
from kube_api_server import KubeApiServer
from tls_certs import ServerTls
from token_gate import TokenGate

pytestmark = pytest.mark.integration

PROFILE = "kube"
USER = "agentid-kube"

EXISTING = """\
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
    certificate-authority: {ca}
contexts:
- name: fake
  context:
    cluster: fake
    user: {user}
current-context: fake
users:
- name: someone-else
  user:
    token: not-ours
- name: {user}
  user:
    token: stale-static-token
"""


def kubectl(sandbox: HelperSandbox, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        ["kubectl", *args],
        capture_output=True,
        text=True,
        env=env or sandbox.env,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def users_of(sandbox: HelperSandbox, path: Path) -> dict[str, Any]:
    view = kubectl(sandbox, "--kubeconfig", str(path), "config", "view", "--raw", "-o", "json")
    assert view.returncode == 0, view.stderr
    return {u["name"]: u["user"] for u in json.loads(view.stdout)["users"] or []}


def test_merge_into_an_existing_kubeconfig_then_kubectl_uses_it(
    emulator: Any,
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
    server_tls: ServerTls,
) -> None:
    require_tools("kubectl")
    sandbox.configure_one_profile(
        emulator.info, PROFILE, resource=KUBE_RESOURCE, default_profile=None
    )
    start_daemon()
    gate = TokenGate.from_emulator(emulator.info, audience=KUBE_RESOURCE)
    with KubeApiServer(server_tls, gate) as api:
        kubeconfig = sandbox.home / ".kube" / "config"
        kubeconfig.parent.mkdir(mode=0o700)
        before = EXISTING.format(
            server=json.dumps(api.url), ca=json.dumps(str(server_tls.ca_file)), user=USER
        )
        kubeconfig.write_text(before)
        kubeconfig.chmod(0o640)
        env = {k: v for k, v in sandbox.env.items() if k != "KUBECONFIG"}
        merged = sandbox.client(
            "kubeconfig-user", "--profile", PROFILE, "--name", USER, "--merge", env=env
        )
        assert merged.returncode == 0, describe(merged)
        assert str(kubeconfig) in merged.stdout  # the default: ~/.kube/config
        assert (kubeconfig.stat().st_mode & 0o777) == 0o640
        backup = kubeconfig.with_name("config.bak")
        assert backup.read_text() == before
        assert not kubeconfig.with_name("config.lock").exists()
        ours_left = sorted(p.name for p in kubeconfig.parent.iterdir() if "config" in p.name)
        assert ours_left == ["config", "config.bak"]  # (kubectl adds its cache/)
        users = users_of(sandbox, kubeconfig)
        assert users["someone-else"] == {"token": "not-ours"}  # untouched
        ours = users[USER]
        assert "token" not in ours  # the old entry is replaced, not mixed in
        assert ours["exec"]["args"] == ["kubectl-credential", "--profile", PROFILE]
        assert ours["exec"]["interactiveMode"] == "Never"
        assert Path(ours["exec"]["command"]).name == "agentid-helper"
        table = kubectl(sandbox, "--kubeconfig", str(kubeconfig), "get", "namespaces")
        assert table.returncode == 0, table.stderr
        assert "agentid-demo" in table.stdout
        assert gate.verify(gate.last_accepted, record=False)["aud"] == KUBE_RESOURCE


def test_merge_defaults_to_the_first_kubeconfig_entry_and_creates_it(
    sandbox: HelperSandbox,
) -> None:
    require_tools("kubectl")
    first, second = sandbox.root / "first.yaml", sandbox.root / "second.yaml"
    second.write_text("apiVersion: v1\nkind: Config\n")
    env = {**sandbox.env, "KUBECONFIG": f"{first}{os.pathsep}{second}"}
    merged = sandbox.client("kubeconfig-user", "--profile", "p", "--merge", env=env)
    assert merged.returncode == 0, describe(merged)
    assert "a new file" in merged.stdout
    assert (first.stat().st_mode & 0o777) == 0o600
    assert list(users_of(sandbox, first)) == ["agentid-helper-p"]
    assert second.read_text() == "apiVersion: v1\nkind: Config\n"
    # --merge FILE names the file; a second merge keeps one entry per name
    again = sandbox.client("kubeconfig-user", "--profile", "q", "--merge", str(second))
    assert again.returncode == 0, describe(again)
    again = sandbox.client("kubeconfig-user", "--profile", "q", f"--merge={second}")
    assert again.returncode == 0, describe(again)
    assert list(users_of(sandbox, second)) == ["agentid-helper-q"]


def test_merge_without_kubectl_is_a_clear_error_and_touches_nothing(
    sandbox: HelperSandbox, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**sandbox.env, "PATH": str(bare)}
    done = sandbox.client("kubeconfig-user", "--profile", "p", "--merge", str(kubeconfig), env=env)
    assert done.returncode == 5
    assert "needs kubectl on PATH" in done.stderr.splitlines()[0]
    assert kubeconfig.read_text() == "apiVersion: v1\nkind: Config\n"
    assert sorted(p.name for p in work.iterdir()) == ["kubeconfig"]


def test_merge_refuses_a_broken_kubeconfig_and_leaves_it(sandbox: HelperSandbox) -> None:
    require_tools("kubectl")
    broken = sandbox.root / "broken.yaml"
    broken.write_text("users: [oops\n")
    done = sandbox.client("kubeconfig-user", "--profile", "p", "--merge", str(broken))
    assert done.returncode == 5, describe(done)
    assert done.stderr.startswith("agentid-helper: error: kubectl config")
    assert broken.read_text() == "users: [oops\n"
    assert sorted(p.name for p in sandbox.root.iterdir() if p.name.startswith(("broken", "."))) == [
        "broken.yaml"
    ]


def test_merge_into_an_impossible_path_is_one_clear_line(sandbox: HelperSandbox) -> None:
    require_tools("kubectl")
    not_a_dir = sandbox.root / "plain-file"
    not_a_dir.write_text("x")
    done = sandbox.client("kubeconfig-user", "--profile", "p", "--merge", f"{not_a_dir}/config")
    assert done.returncode == 5, describe(done)
    assert done.stderr.startswith("agentid-helper: error: kubeconfig-user --merge: cannot write ")
    assert "Traceback" not in done.stderr
    assert not_a_dir.read_text() == "x"
