"""One ``min_validity_s`` rule on both sides of the socket (contract.min_validity_ok).

``--min-validity`` (the client), the ``POST /v1/token`` body (api/bodies.py)
and ``Broker.get_token`` accept and refuse exactly the same values, because
all three ask the contract's one predicate.
"""

from __future__ import annotations

import io
import math

import pytest
from client_fakes import FakeDaemon

from agentid_client.cli import CLI
from agentid_client.contract import MAX_MIN_VALIDITY_S, min_validity_ok
from agentid_daemon.api.bodies import token_options
from agentid_daemon.core.errors import InvalidRequest

VALUES = [0, 1, 299.5, MAX_MIN_VALIDITY_S, MAX_MIN_VALIDITY_S + 0.5, -0.5, -1, math.nan, math.inf]


def _client_accepts(value: float, fake_daemon: FakeDaemon) -> bool:
    out, err = io.StringIO(), io.StringIO()
    code = CLI(io.StringIO(""), out, err).run(["get", "--min-validity", str(value)])
    if code == 0:
        assert fake_daemon.token_requests[-1]["json"]["min_validity_s"] == value
        return True
    assert code == 2 and "--min-validity must be a number of seconds" in err.getvalue()
    return False


def _daemon_accepts(value: float) -> bool:
    try:
        assert token_options({"min_validity_s": value}) == (float(value), False)
    except InvalidRequest as exc:
        assert f"between 0 and {MAX_MIN_VALIDITY_S} seconds" in exc.description
        return False
    return True


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_client_and_daemon_draw_the_same_line(value: float, fake_daemon: FakeDaemon) -> None:
    expected = min_validity_ok(value)
    assert expected == (not math.isnan(value) and 0 <= value <= MAX_MIN_VALIDITY_S)
    assert _client_accepts(value, fake_daemon) is expected
    assert _daemon_accepts(value) is expected
