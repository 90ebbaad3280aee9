"""--save-profile and --delete-profile edit config.toml with tomlkit: comments and
layout kept, the file replaced atomically with its mode, no profile overwritten."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from agentid_daemon.core.errors import InvalidRequest
from agentid_daemon.provision.profile_file import (
    check_new_name,
    delete_profiles_of,
    save_profile,
)

AGENT = "33333333-3333-3333-3333-333333333333"
NEW = "55555555-5555-5555-5555-555555555555"
CONFIG = """\
# top comment
default_profile = "bp"

[defaults]   # shared
tenant_id = "contoso.onmicrosoft.com"

# the blueprint's profile
[profiles.bp]
blueprint_app_id = "22222222-2222-2222-2222-222222222222"   # the blueprint
agent_identity_app_id = "33333333-3333-3333-3333-333333333333"
blueprint_credential = { secret_file = "bp.secret" }
scope = "https://vault.azure.net/.default"
user_upn = "someone@contoso.com"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    path.chmod(0o640)
    return path


def test_save_keeps_comments_and_mode_and_inherits(config: Path) -> None:
    save_profile(str(config), "bp", "bot", {"agent_identity_app_id": NEW, "mode": "AutonomousApp"})
    text = config.read_text()
    assert text.startswith(CONFIG)  # everything before is untouched, byte for byte
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    bot = tomllib.loads(text)["profiles"]["bot"]
    assert bot == {
        "blueprint_app_id": "22222222-2222-2222-2222-222222222222",
        "blueprint_credential": {"secret_file": "bp.secret"},
        "scope": "https://vault.azure.net/.default",
        "agent_identity_app_id": NEW,
        "mode": "AutonomousApp",
    }
    assert "blueprint_credential = {secret_file" in text or "{ secret_file" in text
    assert not [p for p in os.listdir(config.parent) if p.endswith(".tmp")]


def test_never_overwrites_and_checks_names(config: Path) -> None:
    with pytest.raises(InvalidRequest, match="already exists"):
        save_profile(str(config), "bp", "bp", {"agent_identity_app_id": NEW})
    for bad in ("a.b", "", "x" * 65, "white space"):
        with pytest.raises(InvalidRequest, match="letters, digits"):
            check_new_name(bad, ())
    assert config.read_text() == CONFIG


def test_delete_profiles_of_an_agent(config: Path) -> None:
    save_profile(str(config), "bp", "bot", {"agent_identity_app_id": NEW})
    assert delete_profiles_of(str(config), NEW.upper()) == ["bot"]
    assert config.read_text().startswith(CONFIG)
    assert "bot" not in tomllib.loads(config.read_text())["profiles"]
    assert delete_profiles_of(str(config), "66666666-6666-6666-6666-666666666666") == []
    assert delete_profiles_of(str(config), AGENT) == ["bp"]
    assert "default_profile" not in tomllib.loads(config.read_text())
