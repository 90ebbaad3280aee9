"""status table rendering."""

from __future__ import annotations

from agentid_client.statusview import render_status

NOW = 1_000_000.0


def test_table_rows_and_no_tokens() -> None:
    body = {
        "daemon": {"pid": 42, "uptime_s": 3700, "socket": "/run/s.sock", "config_path": "/c.toml"},
        "entries": [
            {
                "kind": "resource",
                "profile": "bot",
                "mode": "AutonomousApp",
                "agent_identity_app_id": "aaaa",
                "scopes": ["https://graph.microsoft.com/.default"],
                "user": None,
                "expires_on": NOW + 3000,
                "refresh_on": NOW + 125,
                "last_error": None,
                "access_token": "SHOULD-NOT-SHOW",
            },
            {
                "kind": "t1",
                "agent_identity_app_id": "aaaa",
                "expires_on": NOW - 1,
                "refresh_on": None,
                "last_error": {"error_description": "bad\nsecret", "aadsts_codes": [7000215]},
            },
        ],
    }
    out = render_status(body, now=NOW)
    lines = out.splitlines()
    assert lines[0] == "daemon: pid 42, up 1h01m, socket /run/s.sock, config /c.toml"
    assert lines[1] == "log: /run/agentid-helperd.log"
    del lines[1]
    assert lines[1].split() == [
        "PROFILE",
        "MODE",
        "AGENT",
        "SCOPE",
        "USER",
        "STATE",
        "EXPIRES",
        "IN",
        "NEXT",
        "REFRESH",
        "LAST",
        "ERROR",
    ]
    assert lines[2].split() == [
        "bot",
        "AutonomousApp",
        "aaaa",
        "https://graph.microsoft.com/.default",
        "-",
        "-",
        "50m00s",
        "2m05s",
        "-",
    ]
    assert lines[3].split() == [
        "-",
        "(t1)",
        "aaaa",
        "-",
        "-",
        "-",
        "expired",
        "-",
        "AADSTS7000215",
        "bad",
        "secret",
    ]
    assert "SHOULD-NOT-SHOW" not in out


def test_empty() -> None:
    assert render_status({"entries": []}, now=NOW) == "no cached tokens"
    assert render_status([], now=NOW) == "no cached tokens"


def test_managed_identity_endpoint_and_entry() -> None:
    body = {
        "daemon": {
            "pid": 42,
            "uptime_s": 5,
            "socket": "/run/s.sock",
            "config_path": "/c.toml",
            "managed_identity": {"endpoint": "http://127.0.0.1:4100/msi/token", "sessions": 2},
        },
        "entries": [
            {
                "kind": "managed_identity",
                "managed_identity": "client_id=9999",
                "expires_on": NOW + 80000,
                "refresh_on": NOW + 50000,
                "last_error": None,
            }
        ],
    }
    lines = render_status(body, now=NOW).splitlines()
    assert lines[1] == "managed identity endpoint: http://127.0.0.1:4100/msi/token, 2 session(s)"
    assert lines[2] == "log: /run/agentid-helperd.log"
    assert "(managed_identity)" in lines[4]
    assert "client_id=9999" in lines[4]


def test_a_failed_reload_is_shown() -> None:
    body = {
        "daemon": {"pid": 7, "uptime_s": 1, "last_reload_error": "/c.toml: the file is missing"},
        "entries": [],
    }
    lines = render_status(body, now=NOW).splitlines()
    expected = "config reload failed (previous config in force): /c.toml: the file is missing"
    assert lines[1] == expected
    body["daemon"]["last_reload_error"] = None
    assert "reload" not in render_status(body, now=NOW)


def test_exec_sessions_without_a_fixed_endpoint_are_counted() -> None:
    body = {
        "daemon": {"pid": 1, "uptime_s": 5, "managed_identity": {"endpoint": None, "sessions": 3}},
        "entries": [],
    }
    lines = render_status(body, now=NOW).splitlines()
    assert "managed identity endpoint: a port per exec, 3 session(s)" in lines
    idle = {"daemon": {"pid": 1, "managed_identity": {"endpoint": None, "sessions": 0}}}
    assert "managed identity" not in render_status({**idle, "entries": []}, now=NOW)
