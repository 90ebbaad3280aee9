"""Unit tests for mapping MSAL results to tokens and errors."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from agentid_daemon.core.errors import IdentityProviderError
from agentid_daemon.idp.results import error_from_result, parse_retry_after, token_from_result


class _Last:
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.correlation_id = "hdr-corr"


def test_error_mapping_codes_hint_and_redaction() -> None:
    jwtish = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig-part"
    err = error_from_result(
        "obo",
        {
            "error": "invalid_grant",
            "error_description": f"AADSTS50013: Assertion {jwtish} failed.\r\nTrace ID: x",
            "error_codes": [50013],
            "correlation_id": "corr-1",
        },
        _Last(400),
    )
    assert err.aadsts_codes == (50013,)
    assert err.correlation_id == "corr-1"
    assert not err.transient
    assert err.hint
    assert "/access_agent" in err.hint
    assert jwtish not in str(err)
    assert "Trace ID" not in str(err)
    assert str(err).startswith("obo: invalid_grant: AADSTS50013")


@pytest.mark.parametrize(
    ("result", "status", "transient"),
    [
        ({"error": "temporarily_unavailable"}, 400, True),
        ({"error": "invalid_request", "error_description": "AADSTS90033: transient"}, 400, True),
        ({"error": "invalid_client"}, 401, False),
        ({"error": "throttled"}, 429, True),
        ({"error": "consent_required", "error_codes": [65001]}, 400, False),
    ],
)
def test_transient_classification(result: dict[str, Any], status: int, transient: bool) -> None:

    err = error_from_result("t1", result, _Last(status))
    assert err.transient is transient
    assert err.correlation_id == "hdr-corr"


def test_retry_after_parsing() -> None:

    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after("-3") == 0.0
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 60 < (parse_retry_after(future) or 0) <= 121


def test_token_mapping_refresh_on_and_scopes() -> None:

    token = token_from_result(
        "obo",
        {
            "access_token": "at",
            "expires_in": 7200,
            "refresh_on": 1000 + 3600,
            "scope": "User.Read openid profile offline_access",
        },
        1000.0,
        ["User.Read"],
    )
    assert token.expires_in == 7200
    assert token.refresh_in == 3600
    assert token.scope == "User.Read"
    with pytest.raises(IdentityProviderError, match="expires_in") as info:
        token_from_result("t1", {"access_token": "at", "expires_in": "x"}, 0.0, [])
    assert info.value.transient
    assert info.value.leg == "t1"
