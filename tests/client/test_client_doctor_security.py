"""doctor's security checks: file modes, the daemon's last reload, git's helper chain."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
import test_client_doctor
from client_fakes import FakeDaemon

from agentid_client import doctor_security
from agentid_client.doctor import run_doctor

config = test_client_doctor.config  # doctor's config fixture (fake_daemon is in conftest)


def doctor() -> tuple[int, str]:
    out = io.StringIO()
    return run_doctor(out), out.getvalue()


def test_secret_readable_by_others_fails_with_the_fix(
    fake_daemon: FakeDaemon, config: Path
) -> None:
    """The daemon refuses such a secret (file_trust), so doctor fails (✘), not warns."""
    secret = config.parent / "s"
    secret.chmod(0o644)
    config.chmod(0o644)  # a config may be read by others: it holds no secret
    code, text = doctor()
    assert code == 5, text
    assert (
        f"✘ profile app: secret file {secret} is readable by group or others (mode 0644) "
        "and holds a secret" in text
    )
    assert f"fix: chmod 600 {secret}" in text
    assert f"config {config} is" not in text
    secret.chmod(0o600)
    code, text = doctor()
    assert code == 0, text
    assert "✔ 2 file(s) the daemon trusts: none changeable by other users" in text


def test_config_and_ca_bundle_writable_by_others_fail(
    fake_daemon: FakeDaemon, config: Path
) -> None:
    ca = config.parent / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ca.chmod(0o666)
    with config.open("a") as fh:
        fh.write(f'[profiles.ca]\nca_bundle = "{ca}"\n')
    code, text = doctor()
    assert code == 5, text
    assert f"✘ profile ca: ca_bundle {ca} is writable by group or others (mode 0666)" in text
    assert f"fix: chmod go-w {ca}" in text
    config.chmod(0o622)
    code, text = doctor()
    assert code == 5, text
    assert (
        f"✘ config {config}: config file {config} is writable by group or others (mode 0622)"
        in text
    )
    assert f"fix: chmod go-w {config}" in text


def test_failed_reload_is_a_failure(fake_daemon: FakeDaemon, config: Path) -> None:
    """The daemon kept its old config after a bad SIGHUP; doctor says so."""
    error = f"{config}: the file is missing"
    fake_daemon.routes[("GET", "/v1/status")] = lambda req: (
        200,
        {"daemon": {"pid": 1, "last_reload_error": error}, "entries": []},
    )
    code, text = doctor()
    assert code == 5  # a configuration failure (doctor exits with its first failed check)
    assert f"✘ daemon configuration reload: {error}" in text
    fake_daemon.routes[("GET", "/v1/status")] = lambda req: (
        200,
        {"daemon": {"pid": 1, "last_reload_error": None}, "entries": []},
    )
    assert "✔ daemon configuration reload: ok" in doctor()[1]


def test_a_daemon_serving_an_older_file_is_a_failure(fake_daemon: FakeDaemon, config: Path) -> None:
    """Was: "daemon configuration reload: ok" while the daemon served an older file."""
    st = config.stat()
    served = {"device": st.st_dev, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "size": 1}
    status = {"pid": 1, "last_reload_error": None, "config_path": str(config)}
    fake_daemon.routes[("GET", "/v1/status")] = lambda req: (
        200,
        {"daemon": {**status, "config_file": served}, "entries": []},
    )
    code, text = doctor()
    assert code == 5, text
    assert f"✘ daemon configuration: it serves an older version of {config}" in text
    assert "agentid-helper reload" in text
    assert "reload: ok" not in text
    served["size"] = st.st_size  # now it is the file on disk
    code, text = doctor()
    assert "✔ daemon configuration reload: ok" in text, text


@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private global git config (no system config)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def git_config(*args: str) -> None:
    subprocess.run(["git", "config", "--global", *args], check=True)


def test_old_git_with_a_storing_helper_after_ours_is_warned(
    fake_daemon: FakeDaemon, config: Path, git_home: Path
) -> None:
    """git < 2.46 hands the bearer token to `store`, which writes it in clear."""
    git_config("--add", "credential.https://dev.azure.com.helper", "")
    git_config("--add", "credential.https://dev.azure.com.helper", "!agentid-helper git-credential")
    git_config("--add", "credential.https://dev.azure.com.helper", "store")
    version = doctor_security.parse_git_version(
        subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    )
    assert version is not None
    code, text = doctor()
    assert code == 0
    warned = "⚠ git" in text and "other helpers for https://dev.azure.com (store)" in text
    assert warned == (version < doctor_security.GIT_SAFE_VERSION), text


def test_no_warning_for_our_helper_alone_or_after_a_reset(
    fake_daemon: FakeDaemon, config: Path, git_home: Path
) -> None:
    git_config("--add", "credential.helper", "store")  # for every host, but cleared below
    git_config("--add", "credential.https://dev.azure.com.helper", "")
    git_config("--add", "credential.https://dev.azure.com.helper", "!agentid-helper git-credential")
    assert doctor_security.git_helper_chains() == {
        "*": ["store"],
        "https://dev.azure.com": ["!agentid-helper git-credential"],
    }
    assert "⚠ git" not in doctor()[1]
    # A generic `store` after our list (in file order) applies to dev.azure.com too.
    with open(git_home / ".gitconfig", "a") as fh:
        fh.write("[credential]\n\thelper = store\n")
    chain = doctor_security.git_helper_chains()["https://dev.azure.com"]
    assert chain == ["!agentid-helper git-credential", "store"]
