"""An Entra refusal carries a one-line hint that says what to check next.

Through the seam that uses the hints: ``error_from_result`` maps an OAuth error
answer to the ``IdentityProviderError`` the client shows, and its ``hint`` is
what the user reads under the error line.
"""

from __future__ import annotations

import pytest

from agentid_daemon.idp.hints import hint_for
from agentid_daemon.idp.results import error_from_result

#: The AADSTS codes agent identity users meet most on the token legs (wrong
#: secret, no matching federated credential, consent, wrong audience, agent user
#: not linked, clock, unknown app): each must come with a hint.
COMMON_CODES = [7000215, 7000216, 7002137, 700211, 65001, 50034, 50013, 82001, 1002012]
COMMON_CODES += [700024, 700016]
#: Values of the request, as Entra quotes them in its descriptions.
APP_ID = "33333333-3333-3333-3333-333333333333"
UPN = "someone@contoso.example"


def refusal(*codes: int, in_description_only: bool = False) -> dict[str, object]:
    description = " ".join(f"AADSTS{code}: about {APP_ID} and {UPN}." for code in codes)
    answer: dict[str, object] = {"error": "invalid_grant", "error_description": description}
    if not in_description_only:
        answer["error_codes"] = list(codes)
    return answer


@pytest.mark.parametrize("in_description_only", [False, True], ids=["error_codes", "text"])
@pytest.mark.parametrize("code", COMMON_CODES)
def test_a_common_refusal_gets_a_one_line_hint_without_the_requests_values(
    code: int, in_description_only: bool
) -> None:
    err = error_from_result("t1", refusal(code, in_description_only=in_description_only), None)
    assert err.aadsts_codes == (code,)
    assert err.hint, f"AADSTS{code} has no hint"
    assert "\n" not in err.hint
    assert APP_ID not in err.hint and UPN not in err.hint  # it says what to check, not echoes


def test_the_first_code_with_a_hint_decides() -> None:
    err = error_from_result("t2", refusal(1, 50034, 65001), None)
    assert err.hint == hint_for([50034])
    assert err.hint is not None and "user does not exist" in err.hint


def test_an_unknown_code_gets_no_hint() -> None:
    assert error_from_result("t1", refusal(1, 2), None).hint is None
    assert error_from_result("t1", {"error": "invalid_client"}, None).hint is None


def test_the_50013_hint_names_the_blueprint_scope() -> None:
    # The OBO user token's audience is the blueprint (agent-on-behalf-of-oauth-flow.md).
    hint = error_from_result("obo", refusal(50013), None).hint
    assert hint is not None
    assert "api://<blueprint app id>/access_agent" in hint
    assert "blueprint" in hint
