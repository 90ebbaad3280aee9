"""Claims challenges and client capabilities: parsing and MSAL's wire form."""

from __future__ import annotations

import base64
import json

import msal.application
import pytest

from agentid_daemon.config.claims import capabilities, merge_capabilities, normalise_claims

CHALLENGE = {"access_token": {"nbf": {"essential": True, "value": "1700000000"}}}
COMPACT = json.dumps(CHALLENGE, separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize(
    "given",
    [
        json.dumps(CHALLENGE, indent=2),
        base64.b64encode(json.dumps(CHALLENGE).encode()).decode(),  # WWW-Authenticate form
        base64.b64encode(json.dumps(CHALLENGE).encode()).decode().rstrip("="),  # unpadded
        base64.urlsafe_b64encode(json.dumps(CHALLENGE).encode()).decode().rstrip("="),
        "  " + json.dumps(CHALLENGE) + "\n",
    ],
)
def test_claims_json_or_base64(given: str) -> None:
    assert normalise_claims(given) == COMPACT


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ("", "empty"),
        ("{not json", "neither a JSON object"),
        ("!!!", "valid base64"),
        (base64.b64encode(b"[1,2]").decode(), "JSON object"),
        ("{}", "non-empty JSON object"),
        ("{" * 20000, "longer than"),
        (17, "must be a string"),
    ],
)
def test_bad_claims_are_refused(given: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        normalise_claims(given)


def test_capabilities() -> None:
    assert capabilities(["cp1", " cp1", "xyz"]) == ("cp1", "xyz")
    assert capabilities("cp1 xyz") == ("cp1", "xyz")
    assert capabilities([]) == ()
    for bad in ([""], ["a b"], [1], ["x"] * 17, 7, {"cp1": 1}):
        with pytest.raises(ValueError):
            capabilities(bad)


@pytest.mark.parametrize("claims", [None, COMPACT])
def test_merge_is_msals_own_representation(claims: str | None) -> None:
    """The refresh-token leg merges capabilities itself: it must match what MSAL's
    other legs send (msal.application._merge_claims_challenge_and_capabilities)."""
    ours = merge_capabilities(("cp1",), claims)
    theirs = msal.application._merge_claims_challenge_and_capabilities(["cp1"], claims)
    assert ours is not None
    assert json.loads(ours) == json.loads(theirs)
    assert merge_capabilities((), claims) == claims
