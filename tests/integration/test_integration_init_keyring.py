"""``init --credential keyring`` with a real Secret Service (gnome-keyring on a private
D-Bus): the secret Graph hands out goes straight into the keyring where the
daemon reads it (service ``agentid-helper``, user = the new blueprint's app id),
never into any output or file; a running daemon reloads and serves the new
profile at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from emulator_graph_helpers import admin_token_file, scripted_init
from helper_stack import DaemonProcess, HelperSandbox, describe
from secret_service import SecretService
from test_integration_keyring import keyring_state

pytestmark = pytest.mark.integration


def test_init_stores_the_secret_in_the_keyring_and_the_running_daemon_serves_it(
    secret_service: SecretService,
    sandbox: HelperSandbox,
    emulator: Any,
    start_daemon: Callable[[], DaemonProcess],
    tmp_path: Path,
) -> None:
    start_daemon()  # with no config file yet: init's reload makes it see the profile
    done = sandbox.client(
        *scripted_init(emulator),
        *("--graph-token-file", str(admin_token_file(emulator, tmp_path))),
        *("--agent-name", "keyring bot", "--json"),
        timeout=120,
    )
    assert done.returncode == 0, describe(done)
    result = json.loads(done.stdout)
    blueprint = result["blueprint_app_id"]
    assert keyring_state(sandbox, blueprint).startswith("present:")
    config = sandbox.config_path.read_text()
    assert 'blueprint_credential = "keyring"' in config
    assert 'default_profile = "keyring-bot"' in config

    got = sandbox.client("get")  # the default profile, from the reloaded daemon
    assert got.returncode == 0, describe(got)
    claims = jwt.decode(got.stdout.strip(), options={"verify_signature": False})
    assert claims["appid"] == result["agent_identity_app_id"]
