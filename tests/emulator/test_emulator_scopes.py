"""Scope resolution as Entra's v2.0 endpoint does it."""

from __future__ import annotations

import pytest

from agentid_emulator.errors import AadstsError
from agentid_emulator.scopes import is_token_exchange, resolve

GRAPH = "https://graph.microsoft.com"


@pytest.mark.parametrize(
    "scope, resource, perms, default",
    [
        ("https://graph.microsoft.com/.default", GRAPH, (), True),
        ("00000003-0000-0000-c000-000000000000/.default", GRAPH, (), True),
        ("api://AzureADTokenExchange/.default", "api://AzureADTokenExchange", (), True),
        ("api://my-api/.default", "api://my-api", (), True),
    ],
)
def test_app_only(scope: str, resource: str, perms: tuple[str, ...], default: bool) -> None:
    resolved = resolve(scope, app_only=True)
    assert (resolved.resource, resolved.permissions, resolved.is_default) == (
        resource,
        perms,
        default,
    )
    assert resolved.response_scope(delegated=False) == f"{resource}/.default"


def test_delegated_short_graph_scopes_and_oidc() -> None:
    resolved = resolve(
        "User.Read openid Mail.Read profile offline_access User.Read", app_only=False
    )
    assert resolved.resource == GRAPH
    assert resolved.permissions == ("User.Read", "Mail.Read")
    assert resolved.response_scope(delegated=True) == (
        "User.Read Mail.Read openid profile offline_access"
    )


def test_delegated_default_and_other_resource() -> None:
    assert resolve(f"{GRAPH}/.default", app_only=False).delegated_permissions() == ("User.Read",)
    other = resolve("api://my-api/Files.Read", app_only=False)
    assert other.resource == "api://my-api"
    assert other.response_scope(delegated=True) == "api://my-api/Files.Read"


@pytest.mark.parametrize(
    "scope, app_only, code",
    [
        ("User.Read", True, 1002012),
        (f"{GRAPH}/User.Read", True, 1002012),
        ("openid profile", True, 1002012),
        ("openid", False, 70011),
        (f"{GRAPH}/.default api://x/.default", True, 28000),
        ("User.Read api://x/Files.Read", False, 28000),
        (f"{GRAPH}/.default User.Read", False, 70011),
        (f"{GRAPH}/.default {GRAPH}/.default", True, 70011),
        ("", True, 900144),
        (None, False, 900144),
        ("api://x/", False, 70011),
    ],
)
def test_invalid(scope: str | None, app_only: bool, code: int) -> None:
    with pytest.raises(AadstsError) as info:
        resolve(scope, app_only=app_only)
    assert info.value.code == code


def test_is_token_exchange() -> None:
    assert is_token_exchange("api://azureadtokenexchange/.default ")
    assert not is_token_exchange("https://graph.microsoft.com/.default")
    assert not is_token_exchange(None)
