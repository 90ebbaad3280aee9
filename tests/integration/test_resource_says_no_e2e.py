"""When the resource says no, end to end: the real client, an autostarted daemon,
MSAL over HTTPS and the emulator.

Claims challenges, CAE capabilities, long-running OBO sessions, and flushing a
rejected token of an OBO profile without its user's token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack
from emulator_config import GRAPH_RESOURCE, emulator_profile, write_emulator_config

pytestmark = pytest.mark.timeout(120)

CHALLENGE = {"access_token": {"nbf": {"essential": True, "value": "1700000000"}}}
# What a resource's WWW-Authenticate carries: claims="<base64>".
CHALLENGE_B64 = base64.b64encode(json.dumps(CHALLENGE).encode()).decode()


@pytest.fixture
def client_env(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    """client_stack's profiles (app, user, obo on Graph) and ``cae``: app with cp1."""
    with client_stack(emulator, tmp_path) as env:
        credential = {"secret_file": str(tmp_path / "bp.secret")}
        profiles = {
            "app": emulator_profile(emulator.info, resource=GRAPH_RESOURCE, credential=credential),
            "obo": emulator_profile(
                emulator.info, resource=GRAPH_RESOURCE, credential=credential, mode="OBO"
            ),
            "cae": emulator_profile(
                emulator.info,
                resource=GRAPH_RESOURCE,
                credential=credential,
                client_capabilities=["cp1"],
            ),
        }
        write_emulator_config(env.config, emulator.info, credential, profiles=profiles)
        yield env


def get_json(env: Env, *args: str, stdin: str = "", **environ: str) -> dict[str, Any]:
    result = env.run("get", "--format", "json", *args, stdin=stdin, **environ)
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

    # the JSON form is the same challenge: within the daemon's claims interval it gets
    # the answer of the fetch that sent it, not a second request; a malformed one is
    # a usage error (exit 2)
    same = get_json(client_env, "--claims", json.dumps(CHALLENGE))
    assert (same["source"], same["access_token"]) == ("cache", challenged["access_token"])
    assert emulator.stats()["token_requests"]["by_leg"]["autonomous_app"] == 2
    bad = client_env.run("get", "--claims", "not-a-claims-value")
    assert bad.returncode == 2
    assert "claims" in bad.stderr


def test_client_capabilities_put_cp1_in_xms_cc(client_env: Env) -> None:
    cae = get_json(client_env, "--profile", "cae")["access_token"]
    assert claims_of(cae)["xms_cc"] == ["cp1"]
    plain = get_json(client_env)["access_token"]
    assert "xms_cc" not in claims_of(plain)
    assert plain != cae  # cached apart


def wait_until_expired(token: str) -> None:
    """Sleep past a token's exp (an input for the test, not a timed assertion)."""
    exp = int(claims_of(token)["exp"])
    while time.time() <= exp + 1:
        time.sleep(0.5)


def test_obo_session_outlives_an_8_second_user_token(client_env: Env, emulator: Any) -> None:
    emulator.reset()
    user_token = emulator.user_token(emulator.user_upn, lifetime_s=8)
    # The daemon this autostarts logs at debug level: the session-wide log audit
    # (tests/support/log_audit.py) then proves that not even debug lines hold a refresh token.
    started = get_json(
        client_env,
        "--profile",
        "obo",
        "--obo-session",
        "job-42",
        "--user-token-file",
        "-",
        stdin=user_token,
        AGENTID_HELPER_LOG_LEVEL="debug",
    )
    assert started["source"] == "identity_provider"
    wait_until_expired(user_token)

    # No user token any more: the session's refresh token gets a fresh access token.
    fresh = get_json(client_env, "--profile", "obo", "--obo-session", "job-42", "--force-refresh")
    assert fresh["source"] == "identity_provider"
    assert fresh["access_token"] != started["access_token"]
    claims = claims_of(fresh["access_token"])
    assert claims["upn"].lower() == emulator.user_upn.lower()
    assert claims["idtyp"] == "user"
    by_leg = emulator.stats()["token_requests"]["by_leg"]
    assert (by_leg["obo"], by_leg["obo_refresh"]) == (1, 1)

    # Plain OBO with that user token is over; the session is not.
    expired = client_env.run("get", "--profile", "obo", "--user-token-file", "-", stdin=user_token)
    assert expired.returncode in (2, 4), expired.stderr

    status = client_env.run("status", "--json")
    assert status.returncode == 0, status.stderr
    (session,) = json.loads(status.stdout)["obo_sessions"]
    assert session["name"] == "job-42"
    assert session["refreshes"] == 1
    assert session["user"].startswith("sha256:")
    assert emulator.user_upn.lower() not in status.stdout.lower()
    shown = client_env.run("status")
    assert "job-42" in shown.stdout
    assert "OBO SESSION" in shown.stdout

    # flush --obo-session ends it: the next call without a user token is refused.
    assert client_env.run("flush", "--profile", "obo", "--obo-session", "job-42").returncode == 0
    gone = client_env.run("get", "--profile", "obo", "--obo-session", "job-42")
    assert gone.returncode == 2
    assert "no OBO session 'job-42'" in gone.stderr


def test_flush_of_an_obo_profile_needs_no_user_token(client_env: Env, emulator: Any) -> None:
    """A token the resource rejects (revoked, roles just granted): flush --profile drops
    that profile's tokens of every user; the next request gets a new one."""
    tokens = [emulator.user_token(emulator.user_upn) for _ in range(2)]
    first = [
        get_json(client_env, "--profile", "obo", "--user-token-file", "-", stdin=t) for t in tokens
    ]
    assert (
        get_json(client_env, "--profile", "obo", "--user-token-file", "-", stdin=tokens[0])[
            "source"
        ]
        == "cache"
    )

    flushed = client_env.run("flush", "--profile", "obo")
    assert flushed.returncode == 0, flushed.stderr
    status = json.loads(client_env.run("status", "--json").stdout)
    assert [e for e in status["entries"] if e.get("mode") == "OBO"] == []
    again = get_json(client_env, "--profile", "obo", "--user-token-file", "-", stdin=tokens[0])
    assert again["source"] == "identity_provider"
    assert again["access_token"] not in {f["access_token"] for f in first}
