"""peer_process: a pidfd for a Unix peer, on both paths (SO_PEERPIDFD and pidfd_open).

The peers are real processes connected over a real Unix socket. The
recycled-pid race with another uid is in
tests/daemon/identity_endpoint/test_trust_tcp_endpoint_ports.py.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentid_daemon.core.errors import InvalidRequest
from agentid_daemon.server.peer_process import open_peer_pidfd

PEER = """
import socket, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(sys.argv[1])
conn.sendall(b"x")
if sys.argv[2] == "wait":
    sys.stdin.read()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(4)
        yield listener, path


def _accept(listener: socket.socket) -> tuple[socket.socket, int]:
    conn, _ = listener.accept()
    assert conn.recv(1) == b"x"  # the request, consumed as the server does
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return conn, int.from_bytes(creds[:4], sys.byteorder)


@pytest.mark.parametrize("kernel", [True, False], ids=["SO_PEERPIDFD", "pidfd_open"])
def test_pidfd_names_the_live_peer_and_ends_with_it(
    server: tuple[socket.socket, str], kernel: bool
) -> None:
    listener, path = server
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, path, "wait"], stdin=subprocess.PIPE, text=True
    )
    conn, pid = _accept(listener)
    assert pid == peer.pid
    with conn:
        pidfd = open_peer_pidfd(conn, pid, use_so_peerpidfd=kernel)
    try:
        assert select.select([pidfd], [], [], 0)[0] == []  # alive
        assert peer.stdin is not None
        peer.stdin.close()
        peer.wait(timeout=30)
        assert select.select([pidfd], [], [], 10)[0] == [pidfd]  # readable once it exited
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("kernel", [True, False], ids=["SO_PEERPIDFD", "pidfd_open"])
def test_a_peer_that_exited_gets_no_pidfd(server: tuple[socket.socket, str], kernel: bool) -> None:
    listener, path = server
    peer = subprocess.Popen([sys.executable, "-c", PEER, path, "exit"])
    assert peer.wait(timeout=30) == 0  # reaped: its pid may be anyone's now
    conn, pid = _accept(listener)
    with conn:
        fds_before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(InvalidRequest, match="exited"):
            open_peer_pidfd(conn, pid, use_so_peerpidfd=kernel)
        assert len(os.listdir("/proc/self/fd")) == fds_before  # no pidfd left open


def test_pidfd_open_path_refuses_a_peer_that_closed_its_end(
    server: tuple[socket.socket, str],
) -> None:
    """The peer's pid is alive but its end is closed: the process may not be the peer."""
    listener, path = server
    # The child closes the connection and lives on (as a recycled pid's new owner would).
    closer = PEER.replace('if sys.argv[2] == "wait":', "conn.close()\nif True:")
    peer = subprocess.Popen(
        [sys.executable, "-c", closer, path, "wait"], stdin=subprocess.PIPE, text=True
    )
    try:
        conn, pid = _accept(listener)
        with conn:
            assert conn.recv(1) == b""  # the peer's end is closed
            with pytest.raises(InvalidRequest, match="closed its connection"):
                open_peer_pidfd(conn, pid, use_so_peerpidfd=False)
    finally:
        assert peer.stdin is not None
        peer.stdin.close()
        peer.wait(timeout=30)
