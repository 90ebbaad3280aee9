"""doctor against the fake daemon with a real config file."""

from __future__ import annotations

import io
from pathlib import Path

import client_fakes
import pytest
from client_fakes import FakeDaemon, error_body

from agentid_client.doctor import run_doctor

GUID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    secret = tmp_path / "s"
    secret.write_text("x")
    secret.chmod(0o600)  # a secret only its owner reads (else the daemon refuses it)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[defaults]
tenant_id = "{GUID}"
blueprint_app_id = "{GUID}"
agent_identity_app_id = "{GUID}"
blueprint_credential = {{ secret_file = "{secret}" }}
[profiles.app]
mode = "AutonomousApp"
[profiles.obo]
mode = "OBO"
""")
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(cfg))
    return cfg


def test_all_good(fake_daemon: FakeDaemon, config: Path) -> None:
    out = io.StringIO()
    assert run_doctor(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "✔ config" in text
    assert "2 profile(s)" in text
    assert "✔ daemon ready" in text
    assert "✔ profile app: token acquired" in text
    assert "- profile obo: OBO needs a user token" in text
    assert fake_daemon.token_requests[-1]["json"] == {"profile": "app", "force_refresh": True}
    assert client_fakes.TOKEN not in text


def test_refusal_shows_aadsts(fake_daemon: FakeDaemon, config: Path) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: error_body(
        502,
        "identity_provider_error",
        "invalid client secret",
        aadsts_codes=[7000215],
        hint="run agentid-helper secret set",
    )
    out = io.StringIO()
    assert run_doctor(out) == 4  # the identity provider refused (no undocumented exit 1)
    text = out.getvalue()
    assert "✘ profile app: invalid client secret [AADSTS7000215]" in text
    assert "secret set" in text
    assert "1 check(s) failed" in text


def test_bad_config_and_no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[profiles.x]\nmode = 'Nope'\n")
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(cfg))
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(tmp_path / "absent.sock"))
    monkeypatch.setenv("AGENTID_HELPER_NO_AUTOSTART", "1")
    out = io.StringIO()
    assert run_doctor(out) == 5  # the first failure: the config
    text = out.getvalue()
    assert "✘ config" in text
    assert "✘ daemon at" in text
