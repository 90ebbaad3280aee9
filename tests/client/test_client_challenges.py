"""Client: `get --claims/--obo-session`, `flush --obo-session`, sessions in `status`."""

from __future__ import annotations

import io
import time

from client_fakes import FakeDaemon

from agentid_client.cli import CLI
from agentid_client.statusview import render_status


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = CLI(io.StringIO(stdin), out, err).run(argv)
    return code, out.getvalue(), err.getvalue()


def test_get_sends_claims_and_session(fake_daemon: FakeDaemon) -> None:
    code, _, _ = run(
        [
            "get",
            "--profile",
            "bot",
            "--claims",
            " eyJhY2Nlc3NfdG9rZW4iOnt9fQ ",
            "--obo-session",
            "job-1",
        ]
    )
    assert code == 0
    assert fake_daemon.token_requests[-1]["json"] == {
        "profile": "bot",
        "claims": "eyJhY2Nlc3NfdG9rZW4iOnt9fQ",
        "obo_session": "job-1",
    }


def test_empty_values_are_usage_errors(fake_daemon: FakeDaemon) -> None:
    for flag in ("--claims", "--obo-session"):
        code, _, err = run(["get", flag, " "])
        assert code == 2
        assert f"{flag} is empty" in err
    assert fake_daemon.token_requests == []


def test_flush_obo_session(fake_daemon: FakeDaemon) -> None:
    assert run(["flush", "--profile", "bot", "--obo-session", "job-1"])[0] == 0
    assert run(["flush", "--profile", "aks"])[0] == 0  # no user token needed
    assert [(r["method"], r["path"], r["json"]) for r in fake_daemon.requests] == [
        ("POST", "/v1/flush", {"profile": "bot", "obo_session": "job-1"}),
        ("POST", "/v1/flush", {"profile": "aks"}),
    ]


def test_status_shows_sessions_without_secrets() -> None:
    now = time.time()
    body = {
        "entries": [],
        "obo_sessions": [
            {
                "name": "job-1",
                "agent_identity_app_id": "aaaa",
                "user": "sha256:0123456789abcdef",
                "started_on": int(now - 5400),
                "age_s": 5400.0,
                "ends_on": int(now + 81000),
                "last_refresh": int(now - 120),
                "refreshes": 3,
                "last_error": None,
            }
        ],
    }
    text = render_status(body, now)
    header, row = text.splitlines()[-2:]
    assert header.split()[:3] == ["OBO", "SESSION", "AGENT"]
    assert row.split()[:6] == ["job-1", "aaaa", "sha256:0123456789abcdef", "1h30m", "2m00s", "ago"]
