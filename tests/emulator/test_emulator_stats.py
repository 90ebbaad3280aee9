"""Request counters and the AADSTS error rendering."""

from __future__ import annotations

from agentid_emulator.errors import AadstsError, render
from agentid_emulator.stats import LEGS, Stats


def test_stats() -> None:
    stats = Stats()
    stats.record(leg="t1", client_id="bp", ok=True)
    stats.record(leg="obo", client_id="agent", ok=False)
    stats.record(leg=None, client_id=None, ok=False)
    stats.record(leg="managed_identity", client_id="mi", ok=True)
    got = stats.to_json()["token_requests"]
    assert got["total"] == 4
    assert got["errors"] == 2
    assert got["by_leg"] == {**{leg: 0 for leg in LEGS}, "t1": 1, "obo": 1, "managed_identity": 1}
    assert set(LEGS) >= {
        "t1",
        "autonomous_app",
        "obo",
        "t2",
        "user_fic",
        "blueprint_app",
        "managed_identity",
    }
    assert got["by_client"] == {"bp": 1, "agent": 1, "mi": 1}
    stats.reset()
    assert stats.to_json()["token_requests"]["total"] == 0


def test_render_shape() -> None:
    err = AadstsError(7000215, "Invalid client secret provided.")
    out = render(err, now=0, correlation_id="c-1", authority_host="https://h")
    assert out.status == 401
    assert out.body["error"] == "invalid_client"
    assert out.body["error_codes"] == [7000215]
    assert out.body["timestamp"] == "1970-01-01 00:00:00Z"
    assert out.body["correlation_id"] == "c-1"
    assert out.body["error_uri"] == "https://h/error?code=7000215"
    assert out.body["error_description"] == (
        f"AADSTS7000215: Invalid client secret provided. Trace ID: {out.body['trace_id']} "
        "Correlation ID: c-1 Timestamp: 1970-01-01 00:00:00Z"
    )
    generated = render(
        AadstsError(50034, "x"), now=0, correlation_id=None, authority_host="https://h"
    )
    assert generated.status == 400
    assert generated.body["correlation_id"]
    throttled = AadstsError(90055, "slow down", headers={"Retry-After": "5"})
    assert render(throttled, now=0, correlation_id=None, authority_host="").headers == {
        "Retry-After": "5"
    }
    assert render(throttled, now=0, correlation_id=None, authority_host="").status == 429
