"""Logging never prints raw events (issue row 9): a failing stream drops lines, counted.

``agentid-helperd ... | head -c 10`` closed the daemon's stdout; the stdlib then
printed "--- Logging error ---" with the raw, unredacted event dict on stderr
for every later line.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_app import PROFILE, call

from agentid_daemon.core import logs

FAKE_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLXRva2VuIn0.c2lnbmF0dXJlLXZhbHVlLXh5eg"


class BrokenStream:
    """A stdout whose reader went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


class Records(logging.Handler):
    """A second handler on the root logger: sees each LogRecord as handlers get it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
    logs.configure_logging("info", "json")


@pytest.mark.raw_log_records_hold_planted_secrets
def test_broken_stream_drops_lines_quietly_and_counts_them(
    capsys: pytest.CaptureFixture[str], records: Records
) -> None:
    logs.configure_logging("info", "json", stream=BrokenStream())  # type: ignore[arg-type]
    before = logs.dropped_lines()
    log = logs.get_logger("agentid_daemon.test")
    log.info("request", user_token=FAKE_JWT, detail=f"client_secret=hunter2 {FAKE_JWT}")
    logging.getLogger("msal").warning("refresh failed for %s", FAKE_JWT)
    assert logs.dropped_lines() == before + 2
    err = capsys.readouterr().err
    assert err == ""  # no "--- Logging error ---", no raw event dict
    # Redaction ran before the event became a record: no handler ever held the token.
    event = records.records[0].msg
    assert isinstance(event, dict)
    assert event["user_token"] == logs.MASK
    assert "hunter2" not in str(event)
    assert FAKE_JWT not in str(event)


def test_daemon_with_closed_stdout_prints_nothing_raw(tmp_path: Path) -> None:
    """The row itself: stdout read for 10 bytes, then closed; the daemon keeps serving."""
    config = tmp_path / "config.toml"
    config.write_text(PROFILE.format(name="one"))
    sock = tmp_path / "run" / "d.sock"
    env = {**os.environ, "AGENTID_HELPER_SOCKET": str(sock)}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentid_daemon", "--config", str(config), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert len(proc.stdout.read(10)) == 10  # `| head -c 10`
        proc.stdout.close()
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(5):  # each logs a "request" line at INFO
            status, body = call(
                sock, "POST", "/v1/token", {"profile": "nope", "user_token": FAKE_JWT}
            )
            assert status in (400, 404), body
        status, metrics = call(sock, "GET", "/metrics")
        dropped = _sample(metrics, "agentid_helper_log_lines_dropped_total")
        assert status == 200
        assert dropped >= 5
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    text = err.decode(errors="replace")
    assert "Logging error" not in text
    assert "'event'" not in text
    assert FAKE_JWT not in text


def _sample(metrics: Any, name: str) -> float:
    text = metrics if isinstance(metrics, str) else metrics.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")
