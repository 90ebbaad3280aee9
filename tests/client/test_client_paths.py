"""Socket/config path rules, compared with platformdirs' own answer."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import platformdirs
import pytest

from agentid_client import paths


def platformdirs_socket() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = platformdirs.user_runtime_dir("agentid-helper")
    return os.path.join(base, "agentid-helper.sock")


def test_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", "/some/where.sock")
    assert paths.socket_path() == "/some/where.sock"
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", "~/x.sock")
    assert paths.socket_path() == os.path.expanduser("~/x.sock")


@pytest.mark.parametrize("mode", [0o700, 0o755, None])
def test_matches_platformdirs_with_xdg_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int | None
) -> None:
    monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
    xdg = tmp_path / "run"
    if mode is not None:
        xdg.mkdir(mode=mode)
        xdg.chmod(mode)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    expected = platformdirs_socket()
    assert paths.socket_path() == expected
    if mode == 0o700:
        assert expected == str(xdg / "agentid-helper" / "agentid-helper.sock")


def test_missing_xdg_dir_is_accepted_like_platformdirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
    tmp_path.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "not" / "yet"))
    assert paths.socket_path() == platformdirs_socket()


@pytest.mark.parametrize("value", [None, "", "relative/dir"])
def test_matches_platformdirs_without_usable_xdg(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
    if value is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", value)
    assert paths.socket_path() == platformdirs_socket()


def test_matches_platformdirs_with_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    try:
        assert paths.socket_path() == platformdirs_socket()
    finally:
        tempfile.tempdir = None


def test_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", "/etc/x.toml")
    assert paths.config_path() == "/etc/x.toml"
    monkeypatch.delenv("AGENTID_HELPER_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert paths.config_path() == str(tmp_path / "agentid-helper" / "config.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.config_path() == str(tmp_path / ".config" / "agentid-helper" / "config.toml")
