"""Tests for logs.py: JSON lines, stdlib routing, redaction of tokens and secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest

from agentid_daemon.core.logs import MASK, configure_logging, get_logger, redact, scrub_text

# These tests hand tokens to loggers on purpose; what the daemon renders is
# checked here and by the session-wide audit, pytest's raw record capture is not.
pytestmark = pytest.mark.raw_log_records_hold_planted_secrets

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMiLCJhdWQiOiJ4eXoifQ.c2lnbmF0dXJlLXBhcnQ"
SECRET = "s3cr3t-Value~123"


@pytest.fixture
def out() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    yield stream
    configure_logging("info", "json", stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_line_fields(out: io.StringIO) -> None:
    get_logger("agentid_daemon.test").info("hello", profile="p", mode="OBO", duration_ms=1.5)
    (rec,) = lines(out)
    assert rec["event"] == "hello"
    assert rec["level"] == "info"
    assert rec["logger"] == "agentid_daemon.test"
    assert rec["profile"] == "p"
    assert rec["mode"] == "OBO"
    assert rec["duration_ms"] == 1.5
    assert rec["timestamp"].endswith("Z")


def test_sensitive_keys_masked(out: io.StringIO) -> None:
    get_logger().info("x", access_token=JWT, client_secret=SECRET, Authorization="Bearer abc")
    text = out.getvalue()
    assert JWT not in text
    assert SECRET not in text
    assert "Bearer abc" not in text
    rec = lines(out)[0]
    assert rec["access_token"] == MASK
    assert rec["client_secret"] == MASK
    assert rec["Authorization"] == MASK


def test_jwt_and_form_fragments_scrubbed_in_values(out: io.StringIO) -> None:
    get_logger().info(
        f"got {JWT}",
        detail=f"grant_type=x&client_secret={SECRET}&assertion={JWT}",
        nested={"headers": {"authorization": "Bearer zzzzzzzzzz"}, "items": [JWT]},
    )
    text = out.getvalue()
    assert JWT not in text
    assert SECRET not in text
    assert "zzzzzzzzzz" not in text
    assert "client_secret=" + MASK in text


def test_exception_text_redacted_without_locals(out: io.StringIO) -> None:
    user_token = JWT  # a local variable that must not be rendered
    try:
        raise ValueError(f"server said: client_secret={SECRET} token {user_token}")
    except ValueError:
        get_logger().exception("failed")
    text = out.getvalue()
    assert SECRET not in text
    assert JWT not in text
    rec = lines(out)[0]
    assert "exception" in rec
    frames = rec["exception"][0]["frames"]
    assert frames
    assert all("locals" not in frame for frame in frames)


def test_stdlib_loggers_routed_and_redacted(out: io.StringIO) -> None:
    logging.getLogger("msal.application").warning("POST body client_assertion=%s", JWT)
    logging.getLogger("msal.application").info("suppressed at INFO")
    recs = lines(out)
    assert len(recs) == 1
    assert recs[0]["logger"] == "msal.application"
    assert recs[0]["level"] == "warning"
    assert JWT not in out.getvalue()


def test_console_format(out: io.StringIO) -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    get_logger().info("hello", token=JWT)
    assert "hello" in stream.getvalue()
    assert JWT not in stream.getvalue()


def test_bad_level_and_format() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "json", stream=io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", stream=io.StringIO())


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f'{{"access_token": "{SECRET}"}}', SECRET),
        (f"user_token={SECRET}", SECRET),
        (f"Bearer {SECRET}", SECRET),
        (JWT + ".", JWT),
    ],
)
def test_scrub_text(text: str, secret: str) -> None:
    assert secret not in scrub_text(text)


def test_redact_processor_leaves_plain_values() -> None:
    ev = {"event": "ok", "count": 3, "flag": True, "none": None, "scope": "User.Read"}
    assert redact(None, "info", dict(ev)) == ev
