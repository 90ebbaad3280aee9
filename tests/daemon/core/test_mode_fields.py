"""Which mode takes which request fields, stated once (core/models.py).

``MODE_ONLY_FIELDS`` names the fields only one mode takes; the config loader
(requests through ``Config.resolve``) and the broker (every TokenRequest,
``TokenRequest.mode_problem``) both judge by it, so a bad combination gets the
same sentence whichever door it came through.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentid_client.contract import SELECTION_FIELDS
from agentid_daemon.config.loader import Config
from agentid_daemon.core.errors import InvalidRequest
from agentid_daemon.core.models import (
    MODE_ONLY_FIELDS,
    USER_FIELDS,
    AgentRef,
    CredentialSpec,
    Mode,
    TokenRequest,
    field_not_for_mode,
)

TENANT = "11111111-1111-1111-1111-111111111111"
BLUEPRINT = "22222222-2222-2222-2222-222222222222"
AGENT = "33333333-3333-3333-3333-333333333333"
USER_OID = "44444444-4444-4444-4444-444444444444"
GRAPH = "https://graph.microsoft.com/.default"
JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.c2ln"
IDS = {"tenant_id": TENANT, "blueprint_app_id": BLUEPRINT, "agent_identity_app_id": AGENT}
AGENT_REF = AgentRef(
    "https://login.microsoftonline.com",
    TENANT,
    BLUEPRINT,
    AGENT,
    CredentialSpec("keyring", BLUEPRINT),
)


def test_the_table_names_request_fields_of_both_sides() -> None:
    request_fields = {f.name for f in dataclasses.fields(TokenRequest)}
    named = {k for fields in MODE_ONLY_FIELDS.values() for k in fields}
    assert named <= request_fields
    assert named <= set(SELECTION_FIELDS)
    assert MODE_ONLY_FIELDS[Mode.AUTONOMOUS_USER] == USER_FIELDS
    assert Mode.AUTONOMOUS_APP not in MODE_ONLY_FIELDS  # it takes none of them


def test_field_not_for_mode_names_the_field_and_its_mode() -> None:
    assert field_not_for_mode(Mode.OBO, ["user_token", "obo_session"]) is None
    assert field_not_for_mode(Mode.OBO, ["scope", "user_upn"]) == (
        "user_upn is only valid with mode AutonomousUser, not OBO"
    )
    assert field_not_for_mode(Mode.AUTONOMOUS_APP, ["obo_session"]) == (
        "obo_session is only valid with mode OBO, not AutonomousApp"
    )


@pytest.mark.parametrize(
    ("fields", "request_fields"),
    [
        ({"mode": "AutonomousUser"}, {"mode": Mode.AUTONOMOUS_USER}),
        (
            {"mode": "AutonomousUser", "user_upn": "a@b.c", "user_object_id": USER_OID},
            {"mode": Mode.AUTONOMOUS_USER, "user_upn": "a@b.c", "user_object_id": USER_OID},
        ),
        ({"mode": "OBO"}, {"mode": Mode.OBO}),
        ({"user_upn": "a@b.c"}, {"mode": Mode.AUTONOMOUS_APP, "user_upn": "a@b.c"}),
        ({"user_token": JWT}, {"mode": Mode.AUTONOMOUS_APP, "user_token": JWT}),
        (
            {"mode": "AutonomousUser", "user_upn": "a@b.c", "obo_session": "s"},
            {"mode": Mode.AUTONOMOUS_USER, "user_upn": "a@b.c", "obo_session": "s"},
        ),
    ],
)
def test_resolve_and_the_broker_refuse_with_one_sentence(
    fields: dict[str, Any], request_fields: dict[str, Any]
) -> None:
    problem = TokenRequest(AGENT_REF, scopes=(GRAPH,), **request_fields).mode_problem()
    assert problem is not None
    with pytest.raises(InvalidRequest) as refused:
        Config.empty({}).resolve({**IDS, "scope": GRAPH, **fields})
    assert refused.value.description == problem


def test_good_combinations_pass_both() -> None:
    for fields in (
        {"mode": "AutonomousUser", "user_upn": "a@b.c"},
        {"mode": "OBO", "user_token": JWT},
        {"mode": "OBO", "obo_session": "job-1"},
        {},
    ):
        req = Config.empty({}).resolve({**IDS, "scope": GRAPH, **fields})
        assert req.mode_problem() is None
    # A selection that drops tokens: OBO without a user token names every user's.
    obo = TokenRequest(AGENT_REF, Mode.OBO, (GRAPH,))
    assert obo.mode_problem() is not None
    assert obo.mode_problem(need_user_token=False) is None
