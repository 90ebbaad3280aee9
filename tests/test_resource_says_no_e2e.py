"""When the resource says no, end to end: the real client, an autostarted daemon,
MSAL over HTTPS and the emulator.

Claims challenges, CAE capabilities, long-running OBO sessions, and flushing a
rejected token of an OBO profile without its user's token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack

pytestmark = pytest.mark.timeout(120)

CHALLENGE = {"access_token": {"nbf": {"essential": True, "value": "1700000000"}}}
# What a resource's WWW-Authenticate carries: claims="<base64>".
CHALLENGE_B64 = base64.b64encode(json.dumps(CHALLENGE).encode()).decode()

EXTRA_PROFILES = """
[profiles.obo]
mode = "OBO"
scope = "User.Read"

[profiles.cae]
mode = "AutonomousApp"
client_capabilities = ["cp1"]
"""


@pytest.fixture
def client_env(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    with client_stack(emulator, tmp_path) as env:
        env.config.write_text(env.config.read_text() + EXTRA_PROFILES)
        yield env


def get_json(env: Env, *args: str, stdin: str = "") -> dict[str, Any]:
    result = env.run("get", "--format", "json", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return body


def test_claims_challenge_gets_a_new_token_that_the_cache_then_serves(
    client_env: Env, emulator: Any
) -> None:
    emulator.reset()
    first = get_json(client_env)
    assert get_json(client_env)["access_token"] == first["access_token"]  # cached

    challenged = get_json(client_env, "--claims", CHALLENGE_B64)
    assert challenged["source"] == "identity_provider"
    assert challenged["access_token"] != first["access_token"]
    by_leg = emulator.stats()["token_requests"]["by_leg"]
    assert (by_leg["t1"], by_leg["autonomous_app"]) == (1, 2)

    after = get_json(client_env)
    assert (after["source"], after["access_token"]) == ("cache", challenged["access_token"])

    # the JSON form works as well; a malformed one is a usage error (exit 2)
    assert get_json(client_env, "--claims", json.dumps(CHALLENGE))["source"] == "identity_provider"
    bad = client_env.run("get", "--claims", "not-a-claims-value")
    assert bad.returncode == 2 and "claims" in bad.stderr
