"""Minting and verifying Entra-shaped JWTs; JWKS; the fmi subject."""

from __future__ import annotations

import time

import jwt
import pytest

from agentid_emulator.certs import new_key
from agentid_emulator.jwt_tokens import (
    TokenIssuer,
    fmi_subject,
    unverified_claims,
    unverified_header,
)

TENANT = "7a3e1c52-4b1d-4e0a-9c61-2f3b5d7e9a10"


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer("https://127.0.0.1:1", new_key())


def test_mint_and_verify(issuer: TokenIssuer) -> None:
    token = issuer.mint(TENANT, {"aud": "x", "sub": "s"}, lifetime_s=60)
    assert unverified_header(token) == {"alg": "RS256", "kid": issuer.kid, "typ": "JWT"}
    claims = issuer.verify(token)
    assert claims["iss"] == f"https://127.0.0.1:1/{TENANT}/v2.0"
    assert claims["ver"] == "2.0"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["tid"] == TENANT
    other = issuer.mint(TENANT, {}, lifetime_s=60)
    assert unverified_claims(other)["uti"] != claims["uti"]


def test_jwks_verifies_tokens(issuer: TokenIssuer) -> None:
    key = jwt.PyJWKSet.from_dict(issuer.jwks()).keys[0]
    token = issuer.mint(TENANT, {"aud": "x"}, lifetime_s=60)
    assert jwt.decode(token, key.key, algorithms=["RS256"], audience="x")["aud"] == "x"
    assert key.key_id == issuer.kid


def test_verify_rejects(issuer: TokenIssuer) -> None:
    now = time.time()
    token = issuer.mint(TENANT, {}, lifetime_s=60, now=now)
    with pytest.raises(jwt.ExpiredSignatureError):
        issuer.verify(token, now=now + 60)
    with pytest.raises(jwt.ImmatureSignatureError):
        issuer.verify(token, now=now - 10)
    stranger = TokenIssuer("https://127.0.0.1:1", new_key())
    with pytest.raises(jwt.InvalidSignatureError):
        issuer.verify(stranger.mint(TENANT, {}, lifetime_s=60))  # unknown kid
    forged = TokenIssuer("https://127.0.0.1:1", new_key(), kid=issuer.kid)
    with pytest.raises(jwt.InvalidSignatureError):
        issuer.verify(forged.mint(TENANT, {}, lifetime_s=60))  # right kid, wrong key
    with pytest.raises(jwt.PyJWTError):
        issuer.verify("not.a.jwt")
    assert unverified_claims("garbage") == {}
    assert unverified_header("garbage") == {}


def test_fmi_subject_shape() -> None:
    sub = fmi_subject(TENANT, "b1e2c3d4-0001-4a5b-8c7d-000000000b01", "agent")
    parts = sub.split("/")
    assert parts[:5] == ["", "eid1", "c", "pub", "t"]
    assert parts[6] == "a"
    assert len(parts[5]) == len(parts[7]) == 22
    assert parts[8] == "agent"
