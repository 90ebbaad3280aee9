"""Tests for AADSTS hints."""

from __future__ import annotations

import pytest

from agentid_daemon.idp.hints import HINTS, hint_for

REQUIRED = [7000215, 7000216, 7002137, 700211, 65001, 50034, 50013, 82001, 1002012, 700024, 700016]


@pytest.mark.parametrize("code", REQUIRED)
def test_required_codes_have_one_line_hints(code: int) -> None:
    assert "\n" not in HINTS[code]
    assert HINTS[code]


def test_first_known_code_wins() -> None:
    assert hint_for([1, 50034, 65001]) == HINTS[50034]
    assert hint_for([1, 2]) is None
    assert hint_for([]) is None


def test_50013_hint_names_the_blueprint_scope() -> None:
    # The OBO user token's audience is the blueprint (agent-on-behalf-of-oauth-flow.md).
    assert "api://<blueprint app id>/access_agent" in HINTS[50013]
    assert "blueprint" in HINTS[50013]
