"""With the systemd units installed the client asks systemd, never autostarts (fake systemctl).

The real user manager is exercised in tests/integration/test_systemd_user_manager.py;
here a stand-in ``systemctl`` on PATH answers, so every branch runs in milliseconds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentid_client import autostart, daemon_api
from agentid_client.failures import ClientError

FAKE_SYSTEMCTL = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_SYSTEMCTL_LOG"
case "$*" in
  *is-active*) echo "$FAKE_UNIT_STATE"; [ "$FAKE_UNIT_STATE" = active ] ;;
  *start*) [ -n "$FAKE_START_FAILS" ] && { echo "Failed to connect to bus" >&2; exit 1; }; exit 0 ;;
esac
"""


@pytest.fixture
def units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Installed units, a private runtime dir, a fake systemctl; returns the call log."""
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="aids-"))  # short: AF_UNIX path limit
    runtime.chmod(0o700)
    config = tmp_path / "cfg"
    (config / "systemd/user").mkdir(parents=True)
    (config / "systemd/user/agentid-helper.socket").write_text("[Socket]\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bindir / "systemctl").chmod(0o755)
    log = tmp_path / "systemctl.log"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
    monkeypatch.delenv("AGENTID_HELPER_NO_AUTOSTART", raising=False)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_LOG", str(log))
    monkeypatch.setenv("FAKE_UNIT_STATE", "inactive")
    monkeypatch.setenv("FAKE_START_FAILS", "")

    def no_autostart(*args: object, **kwargs: object) -> None:
        raise AssertionError("the client autostarted a daemon next to the systemd units")

    monkeypatch.setattr(autostart, "ensure_daemon", no_autostart)
    yield log
    shutil.rmtree(runtime, ignore_errors=True)


def test_socket_stopped_client_asks_systemd_to_start_it(units: Path) -> None:
    with pytest.raises(ClientError) as info:  # the fake starts nothing: still no socket
        daemon_api.call("GET", "/healthz", timeout=5)
    assert "--user start agentid-helper.socket" in units.read_text()
    assert info.value.exit_code == 3
    assert "after starting it" in info.value.message


def test_no_user_manager_says_what_to_run(units: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_START_FAILS", "1")
    with pytest.raises(ClientError) as info:
        daemon_api.call("GET", "/healthz", timeout=5)
    assert info.value.exit_code == 3
    assert "Failed to connect to bus" in info.value.message
    assert any("systemctl --user start agentid-helper.socket" in h for h in info.value.hints)


def test_failed_unit_is_not_restarted_behind_the_users_back(
    units: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_UNIT_STATE", "failed")
    with pytest.raises(ClientError) as info:
        daemon_api.call("GET", "/healthz", timeout=5)
    assert info.value.exit_code == 3
    assert "systemd stopped restarting it" in info.value.message
    assert any("systemctl --user status agentid-helper" in h for h in info.value.hints)
    assert any("reset-failed" in h for h in info.value.hints)
    assert "--user start" not in units.read_text()


def test_a_socket_of_ones_own_choice_is_not_systemds(
    units: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGENTID_HELPER_SOCKET elsewhere: the units do not serve it, autostart does."""
    started: list[str] = []
    monkeypatch.setattr(autostart, "ensure_daemon", lambda path, timeout, **_: started.append(path))
    other = str(units.parent / "own.sock")
    with pytest.raises(ClientError):
        daemon_api.call("GET", "/healthz", timeout=5, socket_path=other)
    assert started == [other]
    assert not units.exists()
