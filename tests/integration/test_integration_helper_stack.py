"""The sandbox/daemon/config helpers the integration tests share."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest
from helper_stack import DaemonError, DaemonProcess, HelperSandbox, toml_dumps

pytestmark = pytest.mark.integration


def test_toml_dumps_round_trips_a_config() -> None:
    config = {
        "default_profile": "kube",
        "daemon": {"idle_timeout_s": 60},
        "defaults": {"tenant_id": "t", "ca_bundle": '/tmp/ca "x".pem'},
        "profiles": {
            "kube": {"scope": "a/.default", "blueprint_credential": {"secret_file": "/s"}},
            "kr": {"blueprint_credential": "keyring", "debug": True},
        },
        "git": {"127.0.0.1:8443": {"profile": "kube"}, "dev.azure.com/org": {"profile": "kr"}},
    }
    assert tomllib.loads(toml_dumps(config)) == config


def test_sandbox_environment_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/evil.pem")
    monkeypatch.setenv("KUBECONFIG", "/root/.kube/config")
    box = HelperSandbox.create(tmp_path / "box", {"EXTRA": "1", "PYTHON_KEYRING_BACKEND": None})
    assert "REQUESTS_CA_BUNDLE" not in box.env
    assert "KUBECONFIG" not in box.env
    assert "PYTHON_KEYRING_BACKEND" not in box.env
    assert box.env["EXTRA"] == "1"
    assert box.home.is_relative_to(tmp_path)
    assert box.socket_path.is_relative_to(tmp_path)
    assert os.stat(box.env["XDG_RUNTIME_DIR"]).st_mode & 0o777 == 0o700
    assert box.env["AGENTID_HELPER_NO_AUTOSTART"] == "1"
    secret = box.write_secret("s", "value")
    assert secret.stat().st_mode & 0o777 == 0o600


def test_daemon_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    box = HelperSandbox.create(tmp_path / "box")
    daemon = DaemonProcess(box, [sys.executable, "-c", "import sys; sys.exit('bad config')"])
    with pytest.raises(DaemonError, match="bad config"):
        daemon.start(timeout=20)
    assert daemon.stop() == 1


def test_log_check_catches_jwt_signatures(tmp_path: Path) -> None:
    box = HelperSandbox.create(tmp_path / "box")
    daemon = DaemonProcess(box)
    daemon.log_path.write_text('{"event": "token", "sig": "c2lnbmF0dXJl"}\n')
    daemon.assert_log_free_of(["eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.b3RoZXI"])
    with pytest.raises(AssertionError, match="appears in the daemon log"):
        daemon.assert_log_free_of(["eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl"])
