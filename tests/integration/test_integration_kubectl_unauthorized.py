"""The README's one command for kubectl's "You must be logged in to the server
(Unauthorized)" with a still-valid cached token (revoked at the server, or roles
granted after it was issued): run verbatim from the README against real kubectl,
it makes the next kubectl command work."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from emulator_config import emulator_config
from helper_stack import (
    DaemonProcess,
    HelperSandbox,
    describe,
    emulator_profile,
    require_tools,
)
from kube_api_server import KubeApiServer
from test_integration_kubectl import KUBE_RESOURCE, USER, kubeconfig_with_user, kubectl
from tls_certs import ServerTls
from token_gate import TokenGate
from tooling import ROOT

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
ERROR = "You must be logged in to the server (Unauthorized)"


def readme_fix() -> list[str]:
    """The command the README's kubectl section gives for ERROR."""
    text = README.read_text()
    section = text[text.index("### kubectl") :]
    section = section[: section.index("\n### ", 1)]
    after = section[section.index(ERROR) :]
    command = re.search(r"```sh\n(agentid-helper [^\n]+)\n```", after)
    assert command is not None, "the kubectl section shows no command for the error"
    return shlex.split(command.group(1))


def test_readme_names_flush_of_the_profile() -> None:
    assert readme_fix() == ["agentid-helper", "flush", "--profile", "aks"]


def test_readme_command_fixes_unauthorized(
    emulator: Any,
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
    server_tls: ServerTls,
    tmp_path: Path,
) -> None:
    require_tools("kubectl")
    info = emulator.info
    secret = {"secret_file": str(sandbox.write_secret("bp.secret", info["blueprint_secret"]))}
    sandbox.write_config(
        emulator_config(
            info,
            secret,
            default_profile=None,
            profiles={
                "aks": emulator_profile(info, resource=KUBE_RESOURCE, credential=secret),
                "other": emulator_profile(
                    info, resource="https://vault.azure.net", credential=secret
                ),
            },
        )
    )
    start_daemon()
    entry = sandbox.client("kubeconfig-user", "--profile", "aks", "--name", USER)
    assert entry.returncode == 0, describe(entry)
    other = sandbox.client("get", "--profile", "other")
    assert other.returncode == 0, describe(other)
    gate = TokenGate.from_emulator(info, audience=KUBE_RESOURCE)
    with KubeApiServer(server_tls, gate) as api:
        cfg = kubeconfig_with_user(
            tmp_path / "kubeconfig", entry.stdout, server=api.url, ca=server_tls.ca_file
        )
        ok = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert ok.returncode == 0, ok.stderr
        rejected = gate.last_accepted
        gate.reject(rejected)  # revoked at the server; the daemon cannot know
        refused = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert refused.returncode != 0
        assert ERROR in refused.stderr

        fix = sandbox.client(*readme_fix()[1:])
        assert fix.returncode == 0, describe(fix)
        fixed = kubectl(sandbox, cfg, "get", "namespaces", "-o", "name")
        assert fixed.returncode == 0, fixed.stderr
        assert gate.last_accepted != rejected
    # Only that profile's token went: the other profile is still served from the cache.
    again = sandbox.client("get", "--profile", "other", "--format", "json")
    assert again.returncode == 0, describe(again)
    assert json.loads(again.stdout)["source"] == "cache"
