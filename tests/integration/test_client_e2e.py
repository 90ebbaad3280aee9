"""The client against the real daemon (autostarted) and the emulator.

Every daemon here is started by the client under test, found through its
environment (the private socket path) and killed by pid at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack
from daemon_procs import daemon_pids


@pytest.fixture
def client_env(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    with client_stack(emulator, tmp_path) as env:
        yield env


def test_autostart_race_one_daemon(client_env: Env, emulator: Any) -> None:
    emulator.reset()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: client_env.run("get", timeout=90), range(20)))
    for r in results:
        assert r.returncode == 0, r.stderr
    tokens = {r.stdout.strip() for r in results}
    assert len(tokens) == 1
    assert next(iter(tokens)).count(".") == 2
    assert len(daemon_pids(client_env.sock)) == 1
    stats = emulator.stats()["token_requests"]["by_leg"]
    assert stats.get("t1") == 1
    assert stats.get("autonomous_app") == 1  # single flight


def test_commands_against_the_real_daemon(client_env: Env, emulator: Any) -> None:
    token = client_env.run("get")
    assert token.returncode == 0, token.stderr
    tok = token.stdout.strip()

    header = client_env.run("get", "--format", "header")
    assert header.stdout == f"Authorization: Bearer {tok}\n"
    as_json = json.loads(client_env.run("get", "--format", "json").stdout)
    assert as_json["source"] == "cache"
    assert as_json["mode"] == "AutonomousApp"

    user = client_env.run("get", "--profile", "user", "--scope", "User.Read")
    assert user.returncode == 0, user.stderr

    user_token = emulator.user_token(emulator.user_upn, audience=emulator.blueprint_app_id)
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
    assert json.loads(obo.stdout)["mode"] == "OBO"
    assert user_token not in obo.stderr

    for api in ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"):
        kube = client_env.run(
            "kubectl-credential",
            "--profile",
            "app",
            KUBERNETES_EXEC_INFO=json.dumps({"apiVersion": api}),
        )
        cred = json.loads(kube.stdout)
        # a refresh-ahead may have replaced the token meanwhile: compare shapes, not values
        assert cred["apiVersion"] == api
        assert cred["status"]["token"].count(".") == 2
        assert cred["status"]["expirationTimestamp"].endswith("Z")

    git = client_env.run("git-credential", "get", stdin="protocol=https\nhost=git.example.test\n\n")
    assert git.returncode == 0
    assert git.stdout.startswith("username=app\npassword=ey")

    status = client_env.run("status")
    assert status.returncode == 0
    assert "AutonomousApp" in status.stdout
    raw = client_env.run("status", "--json").stdout
    assert tok not in raw
    assert tok not in status.stdout

    erase = client_env.run(
        "git-credential", "erase", stdin="protocol=https\nhost=git.example.test\n\n"
    )
    assert erase.returncode == 0, erase.stderr
    fresh = json.loads(client_env.run("get", "--format", "json").stdout)
    assert fresh["source"] == "identity_provider"

    assert client_env.run("flush", "--all").returncode == 0
    unknown = client_env.run("get", "--profile", "nope")
    assert unknown.returncode == 2
    assert "nope" in unknown.stderr.splitlines()[0]

    doctor = client_env.run("doctor", timeout=90)
    assert doctor.returncode in (0, 1), doctor.stderr
    assert "✔ daemon ready" in doctor.stdout
    assert "✔ profile app: token acquired" in doctor.stdout


def test_identity_provider_refusal_exit_4(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path, secret="wrong-secret") as env:
        r = env.run("get")
    assert r.returncode == 4, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("agentid-helper: error: ")
    assert "AADSTS7000215" in first
    assert "wrong-secret" not in r.stderr


def test_unknown_tenant_exit_4_with_aadsts90002(client_env: Env) -> None:
    # Authority discovery for a tenant Entra does not know: its AADSTS90002, hint
    # included, reaches the user instead of a bare "discovery failed (HTTP 400)".
    r = client_env.run("get", "--tenant-id", "0badc0de-0000-4000-8000-00000000dead")
    assert r.returncode == 4, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("agentid-helper: error: ")
    assert "AADSTS90002" in first
    assert "0badc0de-0000-4000-8000-00000000dead" in first
    assert "not found" in first
    assert "tenant_id" in r.stderr  # the hint
