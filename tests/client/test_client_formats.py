"""Token output formats and the kubectl ExecCredential."""

from __future__ import annotations

import json

import pytest

from agentid_client.failures import ClientError
from agentid_client.formats import (
    exec_api_version,
    exec_credential,
    exec_expiry,
    format_token,
    humanize_seconds,
    rfc3339,
)

BODY = {"access_token": "tok", "expires_on": 1_800_000_000, "token_type": "Bearer"}


def test_format_token() -> None:
    assert format_token(BODY, "token") == "tok"
    assert format_token(BODY, "header") == "Authorization: Bearer tok"
    assert json.loads(format_token(BODY, "json")) == BODY


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_800_000_000.9) == "2027-01-15T08:00:00Z"


@pytest.mark.parametrize(
    "remaining,margin", [(3600, 60), (600, 60), (300, 30), (10, 1), (0, 0), (-5, 0)]
)
def test_exec_expiry_margin(remaining: float, margin: float) -> None:
    now = 1_000_000.0
    assert exec_expiry(now + remaining, now) == now + remaining - margin


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "client.authentication.k8s.io/v1"),
        ("", "client.authentication.k8s.io/v1"),
        ("{}", "client.authentication.k8s.io/v1"),
        (
            '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential"}',
            "client.authentication.k8s.io/v1beta1",
        ),
    ],
)
def test_exec_api_version(value: str | None, expected: str) -> None:
    assert exec_api_version(value) == expected


@pytest.mark.parametrize(
    "value",
    ["{", "[]", '"x"', '{"apiVersion":"v2"}', '{"apiVersion":1}', '{"kind":"Pod"}'],
)
def test_exec_api_version_malformed(value: str) -> None:
    with pytest.raises(ClientError) as info:
        exec_api_version(value)
    assert info.value.exit_code == 2
    assert "KUBERNETES_EXEC_INFO" in info.value.message


@pytest.mark.parametrize(
    "api", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
)
def test_exec_credential(api: str) -> None:
    out = json.loads(exec_credential(BODY, api, now=1_800_000_000 - 3600))
    assert out == {
        "apiVersion": api,
        "kind": "ExecCredential",
        "status": {"token": "tok", "expirationTimestamp": rfc3339(1_800_000_000 - 60)},
    }


def test_exec_credential_without_expiry() -> None:
    out = json.loads(exec_credential({"access_token": "t"}, "client.authentication.k8s.io/v1"))
    assert out["status"] == {"token": "t"}


def test_humanize() -> None:
    assert [humanize_seconds(s) for s in (-1, 0, 59, 61, 3600, 3725)] == [
        "expired",
        "0s",
        "59s",
        "1m01s",
        "1h00m",
        "1h02m",
    ]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_format_az_is_what_azure_cli_credential_parses(
    tz: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`get --format az` against azure-identity's own parser of `az account get-access-token`."""
    import time

    from azure.identity._credentials.azure_cli import parse_token

    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        body = {**BODY, "tenant_id": "contoso.example"}
        out = json.loads(format_token(body, "az"))
        assert out == {
            "accessToken": "tok",
            "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(1_800_000_000)),
            "expires_on": 1_800_000_000,
            "tenant": "contoso.example",
            "tokenType": "Bearer",
        }
        parsed = parse_token(json.dumps(out))
        assert (parsed.token, parsed.expires_on) == ("tok", 1_800_000_000)
        # Older az printed only expiresOn (local time): it must mean the same instant.
        del out["expires_on"]
        assert parse_token(json.dumps(out)).expires_on == 1_800_000_000
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
