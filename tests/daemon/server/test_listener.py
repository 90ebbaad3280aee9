"""Tests for listener.py: paths, directory checks, stale/live sockets, systemd fds, peers."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from agentid_daemon.core.logs import configure_logging
from agentid_daemon.server.listener import (
    AlreadyRunning,
    ListenerError,
    PeerCred,
    bind_unix_listener,
    default_socket_path,
    ensure_private_dir,
    open_listener,
    peer_allowed,
    peer_credentials,
    socket_from_fd,
    systemd_listen_fds,
)
from agentid_daemon.server.protocol import HttpServer, Response

root_only = pytest.mark.skipif(os.getuid() != 0, reason="needs root (chown / setuid)")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_default_socket_path() -> None:
    assert default_socket_path({"AGENTID_HELPER_SOCKET": "/x/y.sock"}) == Path("/x/y.sock")
    path = default_socket_path({})
    assert path.name == "agentid-helper.sock"
    assert path.parent.name == "agentid-helper"


def test_ensure_private_dir_creates_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    ensure_private_dir(target)
    assert mode(target) == 0o700
    assert mode(target.parent) == 0o700


@pytest.mark.parametrize("lax", [0o770, 0o750, 0o705])
def test_refuses_dir_open_to_group_or_others(tmp_path: Path, lax: int) -> None:
    """The client's rule (no group/other bits at all), not just "not writable"."""
    d = tmp_path / "lax"
    d.mkdir()
    d.chmod(lax)
    with pytest.raises(ListenerError, match=rf"mode {lax:04o} lets other users in"):
        ensure_private_dir(d)


def test_refuses_symlink_and_file(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ListenerError, match="a symlink"):
        ensure_private_dir(tmp_path / "link")


def test_refuses_parent_writable_by_others(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(ListenerError, match="without the sticky bit"):
        ensure_private_dir(parent / "agentid-helper")
    parent.chmod(0o1777)  # like /tmp: fine
    ensure_private_dir(parent / "agentid-helper")


@root_only
def test_refuses_foreign_parent(tmp_path: Path) -> None:
    parent = tmp_path / "runtime-1000"
    parent.mkdir(mode=0o700)
    (parent / "agentid-helper").mkdir(mode=0o700)
    os.chown(parent, 65534, 65534)
    with pytest.raises(ListenerError, match=r"ancestor .*/runtime-1000 is owned by uid 65534"):
        ensure_private_dir(parent / "agentid-helper")


@root_only
def test_refuses_foreign_dir(tmp_path: Path) -> None:
    d = tmp_path / "foreign"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(ListenerError, match="owned by uid 65534"):
        ensure_private_dir(d)


async def test_bind_modes_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "run" / "d.sock"
    with trio.fail_after(5):
        opened = await bind_unix_listener(path)
        assert opened.owned
        assert opened.path == str(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        assert Path(str(path) + ".lock").exists()
        await opened.aclose()
    assert not path.exists()
    assert not Path(str(path) + ".lock").exists()


async def test_stale_socket_replaced(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    with trio.fail_after(5):
        opened = await bind_unix_listener(path)
        await opened.aclose()


async def test_live_daemon_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    with trio.fail_after(5):
        first = await bind_unix_listener(path)
        try:
            with pytest.raises(
                AlreadyRunning, match=rf"already serving on {path} \(pid {os.getpid()}\)"
            ):
                await bind_unix_listener(path)
        finally:
            await first.aclose()


async def test_live_listener_without_lock_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(1)
    try:
        with trio.fail_after(5), pytest.raises(AlreadyRunning, match="already serving"):
            await bind_unix_listener(path)
        assert path.exists()
    finally:
        live.close()


async def test_non_socket_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    path.write_text("precious")
    with trio.fail_after(5), pytest.raises(ListenerError, match="is not a socket"):
        await bind_unix_listener(path)
    assert path.read_text() == "precious"


async def test_path_too_long(tmp_path: Path) -> None:
    with pytest.raises(ListenerError, match="longer than"):
        await bind_unix_listener(tmp_path / ("x" * 120))


def test_systemd_listen_fds_parsing() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}  # not our pid: ignored, still unset
    assert systemd_listen_fds(env) == []
    assert env == {}
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"}
    with pytest.raises(ListenerError, match="invalid"):
        systemd_listen_fds(env)


def test_socket_from_fd_rejects_tcp() -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(ListenerError, match="not a Unix stream socket"):
            socket_from_fd(tcp.fileno())
    finally:
        tcp.close()


def test_systemd_socket_activation_subprocess(tmp_path: Path) -> None:
    """A socket passed as fd 3 with LISTEN_FDS is used as is: never bound, never removed."""
    path = tmp_path / "sd.sock"
    script = textwrap.dedent(
        f"""
        import json, os, socket, trio
        from agentid_daemon.server.listener import open_listener
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind({str(path)!r}); s.listen(4)
        fd = s.detach()
        if fd != 3:
            os.dup2(fd, 3)
            os.close(fd)
        os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="api")
        async def main():
            opened = await open_listener()
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect({str(path)!r})
            stream = await opened.listener.accept()
            await stream.aclose(); c.close()
            await opened.aclose()
            return {{"owned": opened.owned, "path": opened.path,
                    "env": [k for k in os.environ if k.startswith("LISTEN_")],
                    "exists": os.path.exists({str(path)!r})}}
        print(json.dumps(trio.run(main)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    result = json.loads(out.stdout)
    assert result == {"owned": False, "path": str(path), "env": [], "exists": True}


def test_peer_allowed() -> None:
    me = os.getuid()
    assert peer_allowed(PeerCred(1, me, 0))
    assert not peer_allowed(PeerCred(1, me + 1, 0))
    assert peer_allowed(None)


def test_peer_credentials_socketpair() -> None:
    a, b = socket.socketpair()
    try:
        cred = peer_credentials(a)
        assert cred == PeerCred(os.getpid(), os.getuid(), os.getgid())
    finally:
        a.close()
        b.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="agentid-peer-", dir="/tmp"))
    d.chmod(0o711)  # loosened for the test only: another uid must reach the socket
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@root_only
async def test_other_uid_gets_403_and_log_line(shared_dir: Path) -> None:
    path = shared_dir / "d.sock"
    logs = io.StringIO()
    configure_logging("info", "json", stream=logs)

    async def handler(*_a: object) -> Response:
        return Response.json(200, {"ok": True})

    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(4)
    path.chmod(0o666)
    server = HttpServer(handler, allowed_uid=os.getuid())
    script = textwrap.dedent(
        f"""
        import os, socket
        os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect({str(path)!r})
        s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        print(data.decode())
        """
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, trio.SocketListener(sock))
            out = await trio.run_process(
                [sys.executable, "-c", script], capture_stdout=True, check=True
            )
            server.stop()
    text = out.stdout.decode()
    assert text.startswith("HTTP/1.1 403")
    assert '"error":"forbidden"' in text
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    refused = [r for r in lines if r["event"] == "refused connection from another user"]
    assert refused
    assert refused[0]["peer_uid"] == 65534
    assert refused[0]["level"] == "warning"


async def test_open_listener_binds_when_no_systemd(tmp_path: Path) -> None:
    path = tmp_path / "o.sock"
    with trio.fail_after(5):
        opened = await open_listener(path, environ={})
        assert opened.owned
        await opened.aclose()
