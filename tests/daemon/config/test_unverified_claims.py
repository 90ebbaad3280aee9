"""One reader of a user token's claims before Entra sees it (fields.unverified_claims).

Its ``exp`` (refused when past) and its user (whether a user token continues
an OBO session or restarts it) both come from it, so both survive the same
malformed payloads: not base64url, not JSON, not an object, nested deeper
than ``json`` recurses (a 32 KiB token holds that much nesting).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agentid_daemon.broker.obo_sessions import user_fingerprint
from agentid_daemon.config.fields import unverified_claims, user_token_expiry


def token(payload: str) -> str:
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def test_claims_of_a_well_formed_token() -> None:
    claims: dict[str, Any] = {"exp": 1_800_000_000, "tid": "t", "oid": "o"}
    good = token(json.dumps(claims))
    assert unverified_claims(good) == claims
    assert user_token_expiry(good) == 1_800_000_000.0
    other_token_same_user = token(json.dumps({**claims, "exp": 1_900_000_000}))
    assert user_fingerprint(good) == user_fingerprint(other_token_same_user)


@pytest.mark.parametrize(
    "bad",
    [
        "eyJhbGciOiJSUzI1NiJ9.@@@.c2ln",
        token("not json"),
        token("[1, 2]"),
        token("[" * 5_000 + "]" * 5_000),  # 13 KiB: within MAX_USER_TOKEN_CHARS
        "only.two",
    ],
    ids=["not-base64", "not-json", "not-an-object", "deeply-nested", "two-parts"],
)
def test_malformed_payloads_read_as_no_claims(bad: str) -> None:
    assert unverified_claims(bad) is None
    assert user_token_expiry(bad) is None
    # No claims: the token itself names the user (a session restarts for another token).
    assert user_fingerprint(bad).startswith("sha256:")
    assert user_fingerprint(bad) != user_fingerprint(bad + "x")
