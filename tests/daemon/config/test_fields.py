"""Tests for the shared field validators."""

from __future__ import annotations

import pytest

from agentid_daemon.config import fields as F
from agentid_daemon.core.models import Mode

G = "11111111-2222-3333-4444-555555555555"


def test_guid_is_lowercased() -> None:
    assert F.guid(G.upper()) == G


@pytest.mark.parametrize("bad", ["", "not-a-guid", G + "0", 5])
def test_guid_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        F.guid(bad)


def test_tenant_accepts_guid_and_domain() -> None:
    assert F.tenant(G) == G
    assert F.tenant("Contoso.onMicrosoft.com") == "contoso.onmicrosoft.com"


@pytest.mark.parametrize("bad", ["common", "organizations", "contoso", "a b.com", "-x.com"])
def test_tenant_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        F.tenant(bad)


def test_authority_host_canonical() -> None:
    assert F.authority_host("https://Login.MicrosoftOnline.com/") == (
        "https://login.microsoftonline.com"
    )
    assert F.authority_host("https://127.0.0.1:8443") == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    "bad",
    [
        "http://login.microsoftonline.com",
        "https://h/tenant",
        "https://h?x=1",
        "ftp://h",
        "https://u:p@h",
        "https://h:99999",
        "login.microsoftonline.com",
    ],
)
def test_authority_host_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        F.authority_host(bad)


def test_mode_case_insensitive() -> None:
    assert F.mode("autonomoususer") is Mode.AUTONOMOUS_USER
    assert F.mode("obo") is Mode.OBO
    with pytest.raises(ValueError, match="AutonomousApp"):
        F.mode("app")


def test_upn() -> None:
    assert F.upn("Bot@Contoso.com") == "bot@contoso.com"
    with pytest.raises(ValueError):
        F.upn("bot")


def test_user_token_never_echoed() -> None:
    secret = "abc def.ghi.jkl"
    with pytest.raises(ValueError) as info:
        F.user_token(secret)
    assert secret not in str(info.value)
    assert F.user_token("a.b.c") == "a.b.c"


@pytest.mark.parametrize("bad", [True, 0, -1, float("nan"), float("inf"), "5"])
def test_positive_number_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        F.positive_number(bad)


def test_env_name() -> None:
    assert F.env_name("BP_SECRET") == "BP_SECRET"
    with pytest.raises(ValueError):
        F.env_name("1BAD")
