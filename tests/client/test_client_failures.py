"""Daemon error JSON -> exit codes and messages."""

from __future__ import annotations

import io

import pytest

from agentid_client.failures import UsageError, from_response


@pytest.mark.parametrize(
    "status,error,code",
    [
        (400, "invalid_request", 2),
        (404, "unknown_profile", 2),
        (403, "forbidden", 3),
        (502, "identity_provider_error", 4),
        (503, "identity_provider_unavailable", 4),
        (500, "configuration_error", 5),
        (500, "internal_error", 3),
        (418, None, 3),
    ],
)
def test_exit_codes(status: int, error: str | None, code: int) -> None:
    body = {"error": error, "error_description": "d"} if error else None
    assert from_response(status, body).exit_code == code


def test_message_carries_aadsts_correlation_and_hint() -> None:
    err = from_response(
        502,
        {
            "error": "identity_provider_error",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "aadsts_codes": [7000215, 50034],
            "correlation_id": "c-1",
            "hint": "check the secret",
        },
    )
    out = io.StringIO()
    assert err.report(out) == 4
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "agentid-helper: error: AADSTS7000215: Invalid client secret provided. "
        "[AADSTS50034] (identity_provider_error)"
    )
    assert lines[1:] == ["  correlation id: c-1", "  hint: check the secret"]


def test_usage_error_points_at_help() -> None:
    out = io.StringIO()
    assert UsageError("bad", "get").report(out) == 2
    assert "agentid-helper get --help" in out.getvalue()


def test_unmapped_daemon_errors_exit_3_never_1() -> None:
    """Exit 1 is not a documented code: a 500 or an unknown status exits 3."""
    assert from_response(500, {"error": "internal_error"}).exit_code == 3
    assert from_response(418, None).exit_code == 3
    assert from_response(429, {"error": "rate_limited"}).exit_code == 3


def test_the_next_attempt_time_is_printed() -> None:
    """Was: "Try again later" without saying when."""
    body = {
        "error": "identity_provider_unavailable",
        "error_description": "Entra unavailable",
        "next_attempt_in_s": 27,
    }
    (hint,) = from_response(503, body).hints
    assert "retries the identity provider automatically in 27 s" in hint
    assert "--force-refresh" in hint  # what to do now, for those who can pass it
    err = from_response(503, {"error": "identity_provider_unavailable"}, {"retry-after": "9"})
    assert any("automatically in 9 s" in h for h in err.hints)
    assert not any(" in " in h for h in from_response(503, {}, {"retry-after": "x"}).hints)


def test_a_pause_the_identity_provider_asked_for_is_said_so() -> None:
    body = {"error": "identity_provider_unavailable", "next_attempt_in_s": 30}
    (hint,) = from_response(503, {**body, "rate_limited": True}).hints
    assert "asked for a pause" in hint and "30 s" in hint
    assert "does not cut it short" in hint


def test_too_many_identity_sessions_is_exit_2_with_the_reason() -> None:
    """A process over its share of endpoint sessions (429), or a full table (503)."""
    reason = "process 7 already holds 32 managed identity sessions; they end when it exits"
    for status in (429, 503):
        error = from_response(status, {"error": "too_many_sessions", "error_description": reason})
        assert (error.exit_code, error.message.startswith(reason)) == (2, True)
