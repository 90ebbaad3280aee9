"""The client's trust checks (one uid): the private-directory rule before connecting.

The cases that need a second uid (another user's directory or listener) are
in test_trust_two_uids.py; here the directory is ours but not private
enough, or the names in it are not what they seem.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_fakes import FakeDaemon

from agentid_client import autostart, private_dir
from agentid_client.cli import CLI
from agentid_client.doctor import run_doctor


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return CLI(io.StringIO(), out, err).run(argv), out.getvalue(), err.getvalue()


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private directory (short path: AF_UNIX) with the client's environment cleared."""
    directory = Path(tempfile.mkdtemp(prefix="aidc-tr-"))
    monkeypatch.delenv("AGENTID_HELPER_NO_AUTOSTART", raising=False)
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(directory / "absent.toml"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o711, 0o701])
def test_socket_dir_open_to_others_is_refused_before_a_byte(
    base: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    run_dir = base / "run"
    run_dir.mkdir()
    sock = run_dir / "d.sock"
    with FakeDaemon(str(sock)) as fake:
        run_dir.chmod(mode)
        monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(sock))
        for argv in (["get"], ["status"], ["flush", "--all"]):
            code, out, err = run(argv)
            assert (code, out) == (3, ""), err
            first = err.splitlines()[0]
            assert f"refusing the socket directory {run_dir}" in first
            assert f"mode {mode:04o}" in first
            assert "AGENTID_HELPER_SOCKET" in first
        assert fake.requests == []


def test_symlinked_socket_dir_is_refused(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = base / "real"
    real.mkdir(mode=0o700)
    (base / "link").symlink_to(real)
    with FakeDaemon(str(real / "d.sock")) as fake:
        monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(base / "link" / "d.sock"))
        code, _, err = run(["get"])
        assert code == 3
        assert "a symlink" in err.splitlines()[0]
        assert fake.requests == []


def test_missing_dir_under_a_parent_others_may_write_is_refused(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Autostart must not build inside a directory someone else can rearrange."""
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(shared / "agentid-helper" / "d.sock"))
    monkeypatch.setattr(autostart, "_DAEMON_CODE", "raise SystemExit(9)")
    code, _, err = run(["get"])
    assert code == 3
    assert f"ancestor {shared} is writable by others" in err.splitlines()[0]
    assert os.listdir(shared) == []


def test_symlinks_in_our_own_dir_are_not_followed(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_NOFOLLOW: a log or lock name that is a symlink is refused, its target untouched."""
    run_dir = base / "run"
    run_dir.mkdir(mode=0o700)
    victim = base / "victim.txt"
    victim.write_text("precious\n")
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(run_dir / "d.sock"))
    monkeypatch.setattr(autostart, "_DAEMON_CODE", "raise SystemExit(9)")
    for name in (autostart.LOCK_NAME, autostart.LOG_NAME):
        link = run_dir / name
        link.symlink_to(victim)
        code, _, err = run(["get"])
        assert code == 3, err
        assert f"{link}: a symlink; not followed" in err.splitlines()[0], err
        assert victim.read_text() == "precious\n"
        link.unlink()
    (run_dir / autostart.LOCK_NAME).unlink()  # created by the log case's run
    missing = base / "created-by-lock"
    (run_dir / autostart.LOCK_NAME).symlink_to(missing)
    assert run(["get"])[0] == 3
    assert not missing.exists()


def test_fifo_for_the_log_is_refused_without_hanging(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = base / "run"
    run_dir.mkdir(mode=0o700)
    os.mkfifo(run_dir / autostart.LOG_NAME, 0o600)
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(run_dir / "d.sock"))
    monkeypatch.setattr(autostart, "_DAEMON_CODE", "raise SystemExit(9)")
    code, _, err = run(["get"])
    assert code == 3
    assert "not a regular file" in err.splitlines()[0]


def test_make_private_dir_never_adopts_a_lax_existing_dir(base: Path) -> None:
    existing = base / "runtime-x"
    existing.mkdir()
    existing.chmod(0o777)
    with pytest.raises(private_dir.PrivateDirError, match="runtime-x is writable by others"):
        private_dir.make_private_dir(str(existing / "agentid-helper"))
    assert os.listdir(existing) == []
    fresh = base / "fresh" / "agentid-helper"
    private_dir.make_private_dir(str(fresh))
    assert os.stat(fresh).st_mode & 0o777 == 0o700
    assert os.stat(fresh.parent).st_mode & 0o777 == 0o700


def test_doctor_reports_an_untrusted_dir_as_failed_not_alive(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = base / "run"
    run_dir.mkdir()
    sock = run_dir / "d.sock"
    with FakeDaemon(str(sock)) as fake:
        run_dir.chmod(0o755)
        monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(sock))
        out = io.StringIO()
        assert run_doctor(out) == 5  # the first failed check: the socket directory
        text = out.getvalue()
        assert f"✘ socket directory {run_dir}: mode 0755" in text
        assert f"✘ daemon at {sock}: refusing the socket directory" in text
        assert "alive" not in text
        assert fake.requests == []


def test_python_credential_refuses_an_untrusted_socket_too(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python helper goes through the same checks: nothing is sent, a clear error."""
    from azure.core.exceptions import ClientAuthenticationError

    from agentid_client.azure import AgentIdentityCredential

    run_dir = base / "run"
    run_dir.mkdir()
    sock = run_dir / "d.sock"
    with FakeDaemon(str(sock)) as fake:
        run_dir.chmod(0o770)
        credential = AgentIdentityCredential(socket_path=str(sock))
        with pytest.raises(ClientAuthenticationError, match="refusing the socket directory"):
            credential.get_token("https://graph.microsoft.com/.default")
        assert fake.requests == []
