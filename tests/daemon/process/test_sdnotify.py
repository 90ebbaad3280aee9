"""Tests for sdnotify.py: messages on a datagram socket, watchdog timing, no-op mode."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from agentid_daemon.process.sdnotify import Notifier


@pytest.fixture
def notify_sock(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def test_ready_status_stopping(notify_sock: tuple[socket.socket, str]) -> None:
    sock, path = notify_sock
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    with trio.fail_after(5):
        assert await n.ready("2 tokens\ncached")
        assert await n.status("busy")
        assert await n.stopping()
    n.close()
    assert drain(sock) == ["READY=1\nSTATUS=2 tokens cached", "STATUS=busy", "STOPPING=1"]


async def test_abstract_socket() -> None:
    name = f"agentid-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        with trio.fail_after(5):
            assert await n.ready()
        n.close()
        assert drain(sock) == ["READY=1"]
    finally:
        sock.close()


async def test_noop_without_notify_socket() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not await n.ready()
    with trio.fail_after(1):
        await n.run_watchdog()  # returns at once


async def test_unreachable_socket_is_not_fatal(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    with trio.fail_after(5):
        assert not await n.ready()


def test_watchdog_interval_parsing() -> None:
    pid = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "4000000"}).watchdog_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}).watchdog_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None


async def test_watchdog_pings(autojump_clock: trio.abc.Clock, notify_sock) -> None:
    sock, path = notify_sock
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(n.run_watchdog, lambda: "ok")
            await trio.sleep(12)  # pings at 0, 5 and 10 s
            nursery.cancel_scope.cancel()
    n.close()
    msgs = drain(sock)
    assert msgs.count("WATCHDOG=1") == 3
    assert msgs.count("STATUS=ok") == 3


async def test_status_refresh_without_watchdog(autojump_clock: trio.abc.Clock, notify_sock) -> None:
    sock, path = notify_sock
    n = Notifier({"NOTIFY_SOCKET": path})
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(n.run_watchdog, lambda: "ok")
            await trio.sleep(61)  # STATUS at 0, 30 and 60 s
            nursery.cancel_scope.cancel()
    n.close()
    assert drain(sock) == ["STATUS=ok"] * 3
