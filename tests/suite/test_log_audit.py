"""The session-wide log audit finds tokens and secrets, and only those."""

from __future__ import annotations

from pathlib import Path

from log_audit import KNOWN_SECRETS, LogAudit

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0"
    ".eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmU"
)


def test_finds_a_jwt_and_names_the_place_not_the_value() -> None:
    audit = LogAudit()
    audit.scan_text('{"event": "oops", "detail": "Bearer ' + JWT + '"}', "daemon.log")
    assert audit.findings == ["daemon.log: a JWT (token) appears"]
    assert JWT not in audit.findings[0]


def test_finds_refresh_tokens() -> None:
    """Entra-shaped (the emulator mints them so) and the fake engine's."""
    import secrets

    entra_like = "1.AXoA" + secrets.token_urlsafe(300)
    audit = LogAudit()
    audit.scan_text(f'{{"event": "refresh", "refresh_token": "{entra_like}"}}', "daemon.log")
    audit.scan_text("error: rt-secret-3 was refused", "test output")
    audit.scan_text("version 1.A2 and 0.5 and rt-secret-ish", "ok.log")
    assert audit.findings == [
        "daemon.log: a refresh token appears",
        "test output: a refresh token appears",
    ]
    assert entra_like not in " ".join(audit.findings)


def test_finds_known_secrets_and_ignores_redacted_lines() -> None:
    audit = LogAudit()
    audit.scan_text(f"client_secret={KNOWN_SECRETS[0]}", "emulator.log")
    audit.scan_text('{"access_token": "[redacted]", "token": "eyJhbGci...[redacted]"}', "ok.log")
    assert audit.findings == ["emulator.log: a known test secret appears"]


def test_scan_tree_reads_log_files_only(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "agentid-helperd.log").write_text(JWT)
    (tmp_path / "user.jwt").write_text(JWT)  # a token file a test wrote on purpose
    audit = LogAudit()
    audit.scan_tree(tmp_path)
    # The planted files must not trip the session's own audit.
    (tmp_path / "run" / "agentid-helperd.log").unlink()
    (tmp_path / "user.jwt").unlink()
    assert audit.scanned_files == 1
    assert len(audit.findings) == 1
    assert "agentid-helperd.log" in audit.findings[0]
