"""Blueprint secret in the Secret Service (gnome-keyring on a private D-Bus).

``agentid-helper secret set`` stores the secret where the daemon looks for it
(keyring service ``agentid-helper``, user = blueprint app id); a daemon on
the same session bus with ``blueprint_credential = "keyring"`` then gets
tokens from the emulator; after ``secret delete`` a fresh acquisition fails
with a configuration error (exit 5).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from emulator_config import emulator_config
from helper_stack import DaemonProcess, HelperSandbox, describe, emulator_profile
from secret_service import SecretService
from token_gate import TokenGate

pytestmark = pytest.mark.integration

PROFILE = "graph-bot"
GRAPH = "https://graph.microsoft.com"
KEYRING_SERVICE = "agentid-helper"
EXIT_CONFIG = 5

_READ = (
    "import keyring, sys; v = keyring.get_password(sys.argv[1], sys.argv[2]); "
    "print('absent' if v is None else 'present:%d' % len(v))"
)


def keyring_state(sandbox: HelperSandbox, user: str) -> str:
    """'absent' or 'present:<length>' for the keyring item (never the value itself)."""
    probe = subprocess.run(
        [sys.executable, "-c", _READ, KEYRING_SERVICE, user],
        capture_output=True,
        text=True,
        env=sandbox.env,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert probe.returncode == 0, probe.stderr
    return probe.stdout.strip()


def test_keyring_backend_is_secret_service(secret_service: SecretService) -> None:
    assert secret_service.backend == "keyring.backends.SecretService.Keyring"


def test_blueprint_secret_from_the_keyring(
    secret_service: SecretService,
    sandbox: HelperSandbox,
    emulator: Any,
    start_daemon: Callable[[], DaemonProcess],
) -> None:
    info = emulator.info
    blueprint, secret = info["blueprint_app_id"], info["blueprint_secret"]
    sandbox.write_config(
        emulator_config(
            info,
            "keyring",
            profiles={PROFILE: emulator_profile(info, resource=GRAPH, credential="keyring")},
            default_profile=PROFILE,
        )
    )

    stored = sandbox.client("secret", "set", "--blueprint-app-id", blueprint, input=secret + "\n")
    assert stored.returncode == 0, describe(stored)
    assert secret not in stored.stdout + stored.stderr
    assert keyring_state(sandbox, blueprint) == f"present:{len(secret)}"

    daemon = start_daemon()
    got = sandbox.client("get", "--profile", PROFILE)
    assert got.returncode == 0, describe(got)
    token = got.stdout.strip()
    gate = TokenGate.from_emulator(info, audience=GRAPH)
    claims = gate.verify(token)
    assert claims["aud"] == GRAPH

    deleted = sandbox.client("secret", "delete", "--blueprint-app-id", blueprint)
    assert deleted.returncode == 0, describe(deleted)
    assert keyring_state(sandbox, blueprint) == "absent"

    # Cached tokens would hide the missing secret: drop them, then insist on a
    # fresh acquisition, which needs the blueprint secret again.
    flushed = sandbox.client("flush", "--all")
    assert flushed.returncode == 0, describe(flushed)
    again = sandbox.client("get", "--profile", PROFILE, "--force-refresh")
    assert again.returncode == EXIT_CONFIG, describe(again)
    first_line = again.stderr.strip().splitlines()[0].lower()
    assert "keyring" in first_line or "secret" in first_line, again.stderr
    assert again.stdout == ""

    daemon.assert_log_free_of([token, secret])
