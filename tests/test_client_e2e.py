"""The client against the real daemon (autostarted) and the emulator.

Every daemon here is started by the client under test, found through its
environment (the private socket path) and killed by pid at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from daemon_procs import daemon_pids
from log_audit import scan_tree

HELPER = [sys.executable, "-m", "agentid_client"]


def write_config(emu: Any, directory: Path, secret: str | None = None) -> Path:
    secret_file = directory / "bp.secret"
    secret_file.write_text(secret if secret is not None else emu.blueprint_secret)
    secret_file.chmod(0o600)
    config = directory / "config.toml"
    config.write_text(f"""
default_profile = "app"

[defaults]
tenant_id = "{emu.tenant_id}"
authority_host = "{emu.authority_host}"
ca_bundle = "{emu.ca_bundle}"
blueprint_app_id = "{emu.blueprint_app_id}"
agent_identity_app_id = "{emu.agent_identity_app_id}"
blueprint_credential = {{ secret_file = "{secret_file}" }}

[profiles.app]
mode = "AutonomousApp"

[profiles.user]
mode = "AutonomousUser"
user_upn = "{emu.agent_user_upn}"

[git."git.example.test"]
profile = "app"
""")
    return config


class Env:
    def __init__(self, emu: Any, workdir: Path, sockdir: str, secret: str | None = None):
        self.sock = os.path.join(sockdir, "agentid-helper.sock")
        self.config = write_config(emu, workdir, secret)
        self.env = dict(
            os.environ, AGENTID_HELPER_SOCKET=self.sock, AGENTID_HELPER_CONFIG=str(self.config)
        )
        self.env.pop("AGENTID_HELPER_NO_AUTOSTART", None)

    def run(
        self, *args: str, stdin: str = "", timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HELPER, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=timeout,
        )


@pytest.fixture
def client_env(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    sockdir = tempfile.mkdtemp(prefix="aidc-e2e-")  # short: AF_UNIX path limit
    env = Env(emulator, tmp_path, sockdir)
    try:
        yield env
    finally:
        for pid in daemon_pids(env.sock):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while daemon_pids(env.sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in daemon_pids(env.sock):
            os.kill(pid, signal.SIGKILL)
        scan_tree(Path(sockdir))  # session-wide log audit
        shutil.rmtree(sockdir, ignore_errors=True)


def test_autostart_race_one_daemon(client_env: Env, emulator: Any) -> None:
    emulator.reset()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: client_env.run("get", timeout=90), range(20)))
    for r in results:
        assert r.returncode == 0, r.stderr
    tokens = {r.stdout.strip() for r in results}
    assert len(tokens) == 1 and next(iter(tokens)).count(".") == 2
    assert len(daemon_pids(client_env.sock)) == 1
    stats = emulator.stats()["token_requests"]["by_leg"]
    assert stats.get("t1") == 1 and stats.get("autonomous_app") == 1  # single flight


def test_commands_against_the_real_daemon(client_env: Env, emulator: Any) -> None:
    token = client_env.run("get")
    assert token.returncode == 0, token.stderr
    tok = token.stdout.strip()

    header = client_env.run("get", "--format", "header")
    assert header.stdout == f"Authorization: Bearer {tok}\n"
    as_json = json.loads(client_env.run("get", "--format", "json").stdout)
    assert as_json["source"] == "cache" and as_json["mode"] == "AutonomousApp"

    user = client_env.run("get", "--profile", "user", "--scope", "User.Read")
    assert user.returncode == 0, user.stderr

    user_token = emulator.user_token(emulator.user_upn, audience=emulator.agent_identity_app_id)
    obo = client_env.run(
        "get",
        "--mode",
        "OBO",
        "--user-token-file",
        "-",
        "--format",
        "json",
        stdin=user_token + "\n",
    )
    assert obo.returncode == 0, obo.stderr
    assert json.loads(obo.stdout)["mode"] == "OBO" and user_token not in obo.stderr

    for api in ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"):
        kube = client_env.run(
            "kubectl-credential",
            "--profile",
            "app",
            KUBERNETES_EXEC_INFO=json.dumps({"apiVersion": api}),
        )
        cred = json.loads(kube.stdout)
        # a refresh-ahead may have replaced the token meanwhile: compare shapes, not values
        assert cred["apiVersion"] == api and cred["status"]["token"].count(".") == 2
        assert cred["status"]["expirationTimestamp"].endswith("Z")

    git = client_env.run("git-credential", "get", stdin="protocol=https\nhost=git.example.test\n\n")
    assert git.returncode == 0 and git.stdout.startswith("username=app\npassword=ey")

    status = client_env.run("status")
    assert status.returncode == 0 and "AutonomousApp" in status.stdout
    raw = client_env.run("status", "--json").stdout
    assert tok not in raw and tok not in status.stdout

    erase = client_env.run(
        "git-credential", "erase", stdin="protocol=https\nhost=git.example.test\n\n"
    )
    assert erase.returncode == 0, erase.stderr
    fresh = json.loads(client_env.run("get", "--format", "json").stdout)
    assert fresh["source"] == "identity_provider"

    assert client_env.run("flush", "--all").returncode == 0
    unknown = client_env.run("get", "--profile", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr.splitlines()[0]

    doctor = client_env.run("doctor", timeout=90)
    assert doctor.returncode in (0, 1), doctor.stderr
    assert "✔ daemon ready" in doctor.stdout and "✔ profile app: token acquired" in doctor.stdout


def test_identity_provider_refusal_exit_4(emulator: Any, tmp_path: Path) -> None:
    sockdir = tempfile.mkdtemp(prefix="aidc-e2e-")
    env = Env(emulator, tmp_path, sockdir, secret="wrong-secret")
    try:
        r = env.run("get")
        assert r.returncode == 4, r.stderr
        first = r.stderr.splitlines()[0]
        assert first.startswith("agentid-helper: error: ") and "AADSTS7000215" in first
        assert "wrong-secret" not in r.stderr
    finally:
        for pid in daemon_pids(env.sock):
            os.kill(pid, signal.SIGTERM)
        scan_tree(Path(sockdir))  # session-wide log audit
        shutil.rmtree(sockdir, ignore_errors=True)
