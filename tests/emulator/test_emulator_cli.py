"""The emulator as a user runs it: flags, seeds, ready file, admin API, signals."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from emulator_msal_helpers import TX_SCOPE, PinnedSession, agent_app, app
from tooling import SUPPORT

from agentid_emulator.certs import cert_pem, key_pem, new_key, self_signed_certificate
from agentid_emulator.cli import main, write_ready_file

pytestmark = pytest.mark.timeout(60)
SEED = SUPPORT / "emulator_seed_example.toml"
REQUIRED_READY_KEYS = {
    "authority_host",
    "ca_bundle",
    "tenant_id",
    "blueprint_app_id",
    "blueprint_secret",
    "agent_identity_app_id",
    "agent_user_upn",
    "agent_user_object_id",
    "user_upn",
}


def test_ready_file_and_summary(emulator: Any) -> None:
    assert set(emulator.info) >= REQUIRED_READY_KEYS
    assert emulator.authority_host.startswith("https://127.0.0.1:")
    assert Path(emulator.ca_bundle).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "serving https://127.0.0.1:" in emulator.log_text().splitlines()[0]
    # It holds the blueprint secret: owner only.
    ready = emulator.log_path.with_name("ready.json")
    assert ready.stat().st_mode & 0o777 == 0o600


def test_ready_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_ready_file(tmp_path / "ready.json", {"blueprint_secret": "s"})
        (tmp_path / "ready.json").chmod(0o644)
        write_ready_file(tmp_path / "ready.json", {"blueprint_secret": "t"})  # replaces
    finally:
        os.umask(old)
    assert (tmp_path / "ready.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((tmp_path / "ready.json").read_text()) == {"blueprint_secret": "t"}
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no temp file left


def test_graceful_sigterm(emulator_factory: Any) -> None:
    emu = emulator_factory()
    emu.process.send_signal(signal.SIGTERM)
    assert emu.process.wait(timeout=10) == 0
    assert "stopped" in emu.log_text()


def test_graceful_sigint(emulator_factory: Any) -> None:
    emu = emulator_factory()
    emu.process.send_signal(signal.SIGINT)
    assert emu.process.wait(timeout=10) == 0


def test_state_dir_reused_across_restarts(tmp_path: Path) -> None:
    from emulator_harness import start_emulator

    first = start_emulator(tmp_path / "a", state_dir=tmp_path / "state")
    ca = Path(first.ca_bundle).read_bytes()
    first.stop()
    second = start_emulator(tmp_path / "b", state_dir=tmp_path / "state")
    try:
        assert Path(second.ca_bundle).read_bytes() == ca
        assert (tmp_path / "state" / "signing-key.pem").stat().st_mode & 0o077 == 0
    finally:
        second.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "70000"], "between 0 and 65535"),
        (["--token-lifetime-s", "0"], "at least 1"),
        (["--demo", "--seed", "x.toml"], "not allowed with"),
        (["--imds-port", "-1"], "between 0 and 65535"),
    ],
)
def test_bad_flags(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[tenants]]\nid = "not-a-guid"\n', "tenants[0]: 'not-a-guid' is not a GUID"),
        ("tenants = [", "invalid TOML"),
        ("", "at least one [[tenants]]"),
        (
            '[[tenants]]\nid = "22222222-2222-4222-8222-222222222222"\n'
            '[[tenants.agent_identities]]\napp_id = "44444444-4444-4444-8444-444444444444"\n'
            'blueprint_app_id = "33333333-3333-4333-8333-333333333333"\n',
            "is not declared",
        ),
        (
            '[[tenants]]\nid = "22222222-2222-4222-8222-222222222222"\n'
            '[[tenants.managed_identities]]\nclient_id = "x"\n',
            "tenants[0].managed_identities[0]: 'x' is not a GUID",
        ),
        (
            '[[tenants]]\nid = "22222222-2222-4222-8222-222222222222"\n'
            '[[tenants.blueprints]]\napp_id = "33333333-3333-4333-8333-333333333333"\n'
            'roles = "x"\n',
            "'roles' must be a list of non-empty strings",
        ),
    ],
)
def test_bad_seed(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(text)
    assert main(["--seed", str(seed), "--state-dir", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # failed before generating any key


def test_missing_seed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read seed" in capsys.readouterr().err


def test_seed_with_certificate_and_federated_credential(
    tmp_path: Path, emulator_factory: Any
) -> None:
    bp_key, issuer_key = new_key(), new_key()
    bp_cert = self_signed_certificate(bp_key, "bp")
    (tmp_path / "bp-cert.pem").write_bytes(cert_pem(bp_cert))
    (tmp_path / "issuer.pem").write_bytes(cert_pem(self_signed_certificate(issuer_key, "iss")))
    seed = tmp_path / "seed.toml"
    seed.write_text(
        SEED.read_text()
        .replace('# certificates = ["bp-cert.pem"]', 'certificates = ["bp-cert.pem"]')
        .replace(
            "# [[tenants.blueprints.federated_credentials]]\n# issuer",
            "[[tenants.blueprints.federated_credentials]]\nissuer",
        )
        .replace("# subject", "subject")
        .replace("# audience", "audience")
        .replace("# public_key_file", "public_key_file")
        .replace('"issuer-key.pem"', '"issuer.pem"')
    )
    emu = emulator_factory(seed=seed)
    assert emu.tenant_id == "22222222-2222-4222-8222-222222222222"
    assert emu.blueprint_secret == "example-secret-1"
    assert emu.user_upn == "bob@fabrikam.example"
    agent = emu.agent_identity_app_id

    cert_app = app(
        emu,
        emu.blueprint_app_id,
        {"private_key": key_pem(bp_key).decode(), "public_certificate": cert_pem(bp_cert).decode()},
    )
    t1 = cert_app.acquire_token_for_client([TX_SCOPE], fmi_path=agent)
    assert "access_token" in t1, t1
    import jwt

    now = int(time.time())
    github = jwt.encode(
        {
            "iss": "https://token.actions.githubusercontent.com",
            "sub": "repo:contoso/agents:ref:refs/heads/main",
            "aud": "api://AzureADTokenExchange",
            "iat": now,
            "exp": now + 300,
        },
        issuer_key,
        algorithm="RS256",
    )
    fed_app = app(emu, emu.blueprint_app_id, {"client_assertion": lambda: github})
    assert "access_token" in fed_app.acquire_token_for_client([TX_SCOPE], fmi_path=agent)
    result = agent_app(emu, t1["access_token"]).acquire_token_for_client(
        ["https://contoso.sharepoint.com/.default"]
    )
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://contoso.sharepoint.com"
    assert claims["roles"] == ["Sites.Read.All"]
    # The second secret works too (rotation), and the second agent is this blueprint's.
    second = app(emu, emu.blueprint_app_id, "example-secret-2").acquire_token_for_client(
        [TX_SCOPE], fmi_path="55555555-5555-4555-8555-555555555555"
    )
    assert "access_token" in second


def test_admin_user_token(emulator: Any) -> None:
    token = emulator.user_token(emulator.user_upn, "api://my-api")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["idtyp"] == "user"
    assert claims["aud"] == "api://my-api"
    assert claims["upn"] == emulator.user_upn
    assert claims["oid"]
    assert claims["scp"]


def test_admin_errors(emulator: Any) -> None:
    from emulator_harness import EmulatorError

    with pytest.raises(EmulatorError, match="400"):
        emulator.admin("POST", "/_emulator/users/token", {"upn": "x"})
    with pytest.raises(EmulatorError, match="50034"):
        emulator.user_token("nobody@contoso.example", "api://x")
    with pytest.raises(EmulatorError, match="404"):
        emulator.admin("GET", "/_emulator/nothing")


def test_client_secret_basic(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    resp = s.post(
        emulator.token_endpoint,
        auth=(emulator.blueprint_app_id, emulator.blueprint_secret),
        data={
            "grant_type": "client_credentials",
            "scope": TX_SCOPE,
            "fmi_path": emulator.agent_identity_app_id,
        },
    )
    assert resp.status_code == 200, resp.text


def test_http_edges(emulator: Any) -> None:
    s = PinnedSession(emulator.ca_bundle)
    assert s.get(emulator.token_endpoint).status_code == 405
    assert s.get(f"{emulator.authority_host}/nowhere").status_code == 404
    resp = s.post(emulator.token_endpoint, json={"grant_type": "client_credentials"})
    assert resp.status_code == 400
    assert resp.json()["error_codes"] == [900144]
    jwks = s.get(f"{emulator.authority}/discovery/v2.0/keys").json()
    assert jwks["keys"][0]["kty"] == "RSA"
    assert jwks["keys"][0]["kid"]
