"""Tests for scope normalisation and per-mode validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentid_daemon.config.scopes import normalise_scopes, validate_for_mode
from agentid_daemon.core.errors import InvalidRequest
from agentid_daemon.core.models import Mode

GRAPH = "https://graph.microsoft.com/.default"


def test_string_is_split_sorted_and_deduplicated() -> None:
    assert normalise_scopes("User.Read  Mail.Send\tUser.Read") == ("Mail.Send", "User.Read")


def test_resource_uri_host_and_default_suffix_are_lowercased() -> None:
    assert normalise_scopes("HTTPS://Graph.Microsoft.COM/.DEFAULT") == (GRAPH,)
    assert normalise_scopes("api://AzureADTokenExchange/.default") == (
        "api://azureadtokenexchange/.default",
    )


def test_uri_path_keeps_case() -> None:
    assert normalise_scopes("https://X.example/Files.Read") == ("https://x.example/Files.Read",)


def test_short_scopes_dedupe_case_insensitively_first_spelling_wins() -> None:
    assert normalise_scopes(["User.Read", "user.read", "Calendars.Read"]) == (
        "Calendars.Read",
        "User.Read",
    )


def test_iterable_items_may_hold_several_scopes() -> None:
    assert normalise_scopes(["b a", "c"]) == ("a", "b", "c")


@pytest.mark.parametrize("value", ["", "   ", [], [""]])
def test_empty_is_rejected(value: object) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        normalise_scopes(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [42, [1], b"x", None])
def test_wrong_types_are_rejected(value: object) -> None:
    with pytest.raises(InvalidRequest, match="scope must be"):
        normalise_scopes(value)  # type: ignore[arg-type]


def test_bad_characters_are_rejected() -> None:
    with pytest.raises(InvalidRequest, match="invalid character"):
        normalise_scopes('User."Read')


def test_uri_without_host_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="not a valid resource URI"):
        normalise_scopes("https:///.default")


@given(
    st.lists(
        st.sampled_from([GRAPH, "User.Read", "Mail.Send", "HTTPS://GRAPH.microsoft.com/.default"])
    )
)
def test_normalisation_is_idempotent_and_order_free(items: list[str]) -> None:
    if not items:
        return
    once = normalise_scopes(items)
    assert normalise_scopes(list(once)) == once
    assert normalise_scopes(list(reversed(items))) == once


def test_app_only_needs_default_scope() -> None:
    validate_for_mode((GRAPH,), Mode.AUTONOMOUS_APP)
    with pytest.raises(InvalidRequest, match="AADSTS1002012"):
        validate_for_mode(("User.Read",), Mode.AUTONOMOUS_APP)


def test_app_only_takes_one_resource() -> None:
    scopes = normalise_scopes(f"{GRAPH} api://abc/.default")
    with pytest.raises(InvalidRequest, match="exactly one resource"):
        validate_for_mode(scopes, Mode.AUTONOMOUS_APP)


@pytest.mark.parametrize("mode", [Mode.OBO, Mode.AUTONOMOUS_USER])
def test_delegated_modes_accept_short_scopes(mode: Mode) -> None:
    validate_for_mode(("User.Read",), mode)
    validate_for_mode((GRAPH,), mode)


def test_delegated_modes_refuse_oidc_scopes() -> None:
    with pytest.raises(InvalidRequest, match="added by the library"):
        validate_for_mode(("User.Read", "offline_access"), Mode.OBO)


def test_default_without_a_resource_is_refused_before_entra() -> None:
    with pytest.raises(InvalidRequest, match="names no resource"):
        normalise_scopes("/.default")
