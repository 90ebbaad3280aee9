"""identity_sessions: the session table, the sidecar's header file, pidfd-bound sessions."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from agentid_daemon.core.errors import ConfigurationError, InvalidRequest
from agentid_daemon.identity_endpoint.service import IdentitySessions
from agentid_daemon.identity_endpoint.sessions import (
    MIN_HEADER_CHARS,
    IdentitySession,
    SessionTable,
    TooManyProcessSessions,
    TooManySessions,
    load_or_create_header,
    new_header,
    retire_header_file,
)


def test_new_header_has_at_least_128_random_bits() -> None:
    headers = {new_header() for _ in range(100)}
    assert len(headers) == 100
    # token_urlsafe(32): 43 base64url characters = 256 bits
    assert all(len(h) >= 22 for h in headers)


def test_table_finds_only_the_exact_header() -> None:
    table = SessionTable()
    session = IdentitySession(new_header(), {"profile": "p"}, label="profile p", pid=1)
    table.add(session)
    assert table.find(session.header) is session
    assert table.find(session.header[:-1]) is None
    assert table.find(session.header + "x") is None
    assert table.find("") is None
    assert table.find("x" * 10_000) is None
    table.remove(session)
    assert table.find(session.header) is None
    assert len(table) == 0


def test_table_is_bounded() -> None:
    table = SessionTable(max_sessions=2)
    table.add(IdentitySession(new_header(), {}, label="a"))
    table.add(IdentitySession(new_header(), {}, label="b"))
    with pytest.raises(TooManySessions):
        table.add(IdentitySession(new_header(), {}, label="c"))


def test_session_repr_hides_header_and_fields() -> None:
    session = IdentitySession("the-header-value", {"user_token": "tok"}, label="l", pid=3)
    assert "the-header-value" not in repr(session)
    assert "tok" not in repr(session)


def test_header_file_created_private_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "header"
    header = load_or_create_header(str(path))
    assert len(header) >= MIN_HEADER_CHARS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_header(str(path)) == header


@pytest.mark.parametrize("content", ["short", "x" * 40 + " y" * 10, "é" * 40, ""])
def test_header_file_refuses_weak_or_odd_values(tmp_path: Path, content: str) -> None:
    path = tmp_path / "header"
    path.write_text(content)
    path.chmod(0o600)  # a trusted file: refused for its content alone
    with pytest.raises(ConfigurationError, match="must hold one random value") as err:
        load_or_create_header(str(path))
    assert content not in err.value.description or not content


def test_header_file_in_missing_directory_is_created_in_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "header"
    header = load_or_create_header(str(path))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_header(str(path)) == header


def test_header_file_is_not_created_in_a_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ConfigurationError, match="refusing to create") as err:
        load_or_create_header(str(shared / "header"))
    assert f"fix: chmod 700 {shared}" in err.value.description
    assert not (shared / "header").exists()


class FakeTokens:
    def resolve_selection(self, obj: dict[str, Any]) -> Any:
        raise AssertionError("not used")

    async def token_payload(self, obj: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not used")


async def test_session_ends_when_its_process_exits() -> None:
    sessions = IdentitySessions(FakeTokens())
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sessions.run)
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            answer = await sessions.register(
                {"profile": "p"},
                child.pid,
                pidfd=os.pidfd_open(child.pid),
                listener_fd=os.dup(listener.fileno()),
            )
            header = answer["identity_header"]
            assert answer["identity_endpoint"] == f"http://127.0.0.1:{port}/msi/token"
            assert sessions.table.find(header) is not None
            status = sessions.status()
            assert (status["endpoint"], status["sessions"]) == (None, 1)
            assert child.stdin is not None
            child.stdin.close()
            await trio.to_thread.run_sync(child.wait)
            with trio.fail_after(10):
                while sessions.table.find(header) is not None:
                    await trio.sleep(0.01)
            assert sessions.status()["sessions"] == 0
            # The daemon let go of its copy; the port is still held by the caller's.
            listener.close()
            nursery.cancel_scope.cancel()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_register_refuses_a_socket_that_is_not_a_loopback_listener() -> None:
    sessions = IdentitySessions(FakeTokens())
    a, b = socket.socketpair()
    async with trio.open_nursery() as nursery:
        await nursery.start(sessions.run)
        with a, b, pytest.raises(InvalidRequest, match="listening TCP socket on loopback"):
            await sessions.register(
                {}, os.getpid(), pidfd=os.pidfd_open(os.getpid()), listener_fd=os.dup(a.fileno())
            )
        assert len(sessions.table) == 0
        nursery.cancel_scope.cancel()


def test_pidfd_is_available_here() -> None:
    fd = os.pidfd_open(os.getpid())
    os.close(fd)


def test_one_process_gets_its_share_and_others_keep_theirs() -> None:
    table = SessionTable(max_sessions=100, max_per_process=3)
    mine = [IdentitySession(new_header(), {}, label="a", pid=10) for _ in range(3)]
    for session in mine:
        table.add(session)
    with pytest.raises(TooManyProcessSessions, match="process 10 already holds 3"):
        table.add(IdentitySession(new_header(), {}, label="a", pid=10))
    table.add(IdentitySession(new_header(), {}, label="b", pid=11))  # another process
    table.remove(mine[0])  # one of mine ended: room again
    table.add(IdentitySession(new_header(), {}, label="a", pid=10))
    assert len(table) == 4


def test_a_header_cannot_be_registered_twice() -> None:
    table = SessionTable()
    header = new_header()
    table.add(IdentitySession(header, {}, label="a", pid=10))
    with pytest.raises(InvalidRequest, match="already belongs"):
        table.add(IdentitySession(header, {}, label="b", pid=11))


def test_retired_header_file_holds_a_new_header(tmp_path: Path) -> None:
    path = tmp_path / "header"
    old = load_or_create_header(str(path))
    said = retire_header_file(str(path))
    new = load_or_create_header(str(path))
    assert new != old and old not in said
    assert "now holds a new one" in said
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["header"]


def test_header_file_that_cannot_be_replaced_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir(mode=0o700)  # private: the header file is created only there
    path = directory / "header"
    old = load_or_create_header(str(path))
    directory.chmod(0o500)
    try:
        if os.access(directory, os.W_OK):  # root writes anyway: use a path that is no dir
            said = retire_header_file(str(path / "not-a-dir"))
        else:
            said = retire_header_file(str(path))
    finally:
        directory.chmod(0o700)
    assert "replace the header in" in said and old not in said
    assert load_or_create_header(str(path)) == old
