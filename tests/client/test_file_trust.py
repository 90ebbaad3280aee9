"""The file-trust rule (agentid_client.file_trust) on files in a temporary directory.

Ownership by another uid needs a second real uid: tests/daemon/config/test_trust_planted_files.py.
Here the tests run as whoever runs pytest and vary modes, kinds and symlinks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agentid_client import file_trust
from agentid_client.file_trust import UntrustedFile, check_file, read_trusted

CAP = 64 * 1024


def read(path: Path, *, secret: bool = True) -> bytes:
    return read_trusted(str(path), secret=secret, max_bytes=CAP)


def refusal(path: Path, *, secret: bool = True) -> UntrustedFile:
    with pytest.raises(UntrustedFile) as err:
        read(path, secret=secret)
    return err.value


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A directory only we can write, below ancestors that pass (pytest's are 0700)."""
    directory = tmp_path / "home"
    directory.mkdir(mode=0o700)
    return directory


def private_file(path: Path, content: bytes = b"value\n", mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_private_file_is_read(home: Path) -> None:
    assert read(private_file(home / "s")) == b"value\n"
    assert read(private_file(home / "r", mode=0o400)) == b"value\n"


# (0640 of root's group is root's way to provision a credential: tested with
# the real users in test_trust_planted_files.py.)
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660])
def test_secret_readable_by_others_is_refused(home: Path, mode: int) -> None:
    path = private_file(home / "s", mode=mode)
    error = refusal(path)
    assert error.path == str(path)
    assert f"(mode {mode:04o})" in error.reason
    assert error.fix == f"fix: chmod 600 {path}" or error.fix == f"fix: chmod go-w {path}"


def test_readable_non_secret_is_read_but_writable_is_refused(home: Path) -> None:
    path = private_file(home / "config.toml", mode=0o644)
    assert read(path, secret=False) == b"value\n"
    for mode in (0o622, 0o664, 0o646):
        path.chmod(mode)
        error = refusal(path, secret=False)
        assert error.reason == f"is writable by group or others (mode {mode:04o})"
        assert error.fix == f"fix: chmod go-w {path}"


def test_directory_writable_by_others_is_refused(home: Path) -> None:
    shared = home / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path = private_file(shared / "s")
    error = refusal(path)
    assert error.path == str(shared)
    assert "writable by others (mode 0777) without the sticky bit" in error.reason
    assert error.fix == f"fix: chmod go-w {shared}"
    shared.chmod(0o1777)  # sticky: only an entry's owner (we) can replace it
    assert read(path) == b"value\n"


def test_group_writable_directory_higher_up_is_refused(home: Path) -> None:
    upper = home / "a"
    (upper / "b").mkdir(parents=True)
    upper.chmod(0o770)
    path = private_file(upper / "b" / "s")
    assert refusal(path).path == str(upper)


@pytest.mark.parametrize("kind", ["fifo", "dir", "socket"])
def test_not_a_regular_file(home: Path, kind: str) -> None:
    path = home / "x"
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "dir":
        path.mkdir(mode=0o700)
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    error = refusal(path)
    assert "not a regular file" in error.reason


def test_a_fifo_is_refused_at_once_even_with_no_writer(home: Path) -> None:
    """A FIFO is never opened: nothing waits for a writer that never comes."""
    fifo = home / "fifo"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read(fifo)
        except UntrustedFile as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert outcome, "reading a FIFO hung (or did not refuse it)"


def test_devices_are_refused() -> None:
    with pytest.raises(UntrustedFile, match="a character device, not a regular file"):
        read_trusted("/dev/zero", secret=True, max_bytes=CAP)


def test_size_cap(home: Path) -> None:
    at_cap = private_file(home / "at", b"x" * CAP)
    assert len(read(at_cap)) == CAP
    over = private_file(home / "over", b"x" * (CAP + 1))
    assert "larger than 64 KiB" in refusal(over).reason


def test_our_symlink_to_our_file_is_followed(home: Path) -> None:
    target = private_file(home / "real")
    link = home / "link"
    link.symlink_to("real")
    assert read(link) == b"value\n"
    assert check_file(str(link), secret=True) == str(target)


def test_kubernetes_secret_volume_layout_is_followed(home: Path) -> None:
    """``header -> ..data/header``, ``..data -> ..2026_01_01...``: every link passes."""
    volume = home / "volume"
    stamp = volume / "..2026_01_01_00_00_00.123"
    stamp.mkdir(parents=True)
    private_file(stamp / "header", mode=0o400)
    (volume / "..data").symlink_to(stamp.name)
    (volume / "header").symlink_to("..data/header")
    assert read(volume / "header") == b"value\n"


def test_symlink_into_a_shared_directory_is_refused(home: Path) -> None:
    """The link is ours, but its target's directory is writable by others."""
    shared = home / "shared"
    shared.mkdir()
    private_file(shared / "s")
    shared.chmod(0o777)
    link = home / "link"
    link.symlink_to(shared / "s")
    assert refusal(link).path == str(shared)


def test_symlink_loop_is_refused(home: Path) -> None:
    (home / "a").symlink_to("b")
    (home / "b").symlink_to("a")
    assert "too many levels of symlinks" in refusal(home / "a").reason


def test_missing_file_is_marked_missing(home: Path) -> None:
    error = refusal(home / "absent")
    assert error.missing
    error = refusal(home / "no" / "such" / "file")
    assert error.missing and error.path == str(home / "no")


def test_dotdot_is_resolved_after_its_directory_passed(home: Path) -> None:
    (home / "sub").mkdir(mode=0o700)
    private_file(home / "s")
    assert read(home / "sub" / ".." / "s") == b"value\n"


def test_file_replaced_between_walk_and_open_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fd must be the file the walk checked (same device and inode)."""
    path = private_file(home / "s")
    real_resolve = file_trust.resolve

    def resolve_then_swap(p: str, uid: int | None = None) -> tuple[str, os.stat_result]:
        result = real_resolve(p, uid)
        os.link(path, home / "kept")  # the checked inode stays alive: not reused
        private_file(home / "new", b"swapped\n")
        os.rename(home / "new", path)
        return result

    monkeypatch.setattr(file_trust, "resolve", resolve_then_swap)
    assert "changed while it was checked" in refusal(path).reason
