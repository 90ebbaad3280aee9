"""The throughput floor: a minimal trio server replaying one fixed response.

It listens on a Unix socket like the daemon, keeps connections alive like
the daemon, reads each HTTP/1.1 request (head + Content-Length body) and
answers with the exact bytes of a response captured from the real daemon.
No JSON, no routing, no cache lookup, no h11: whatever the daemon needs on
top of this is its overhead.

    python bench/floor_server.py --socket S --response-file F [--ready-file R]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket as stdlib_socket
import sys
from pathlib import Path

import trio

MAX_HEAD = 64 * 1024


def request_end(buf: bytearray) -> int:
    """Bytes taken by the first complete request in ``buf``, or 0 if incomplete."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buf) > MAX_HEAD:
            raise ValueError("request head too large")
        return 0
    length = 0
    # Header names are case-insensitive; the benchmark client sends
    # "Content-Length" but stay correct for any client.
    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    end = head_end + 4 + length
    return end if len(buf) >= end else 0


async def handle(stream: trio.SocketStream, response: bytes) -> None:
    buf = bytearray()
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not chunk:
                return
            buf += chunk
            # Answer every complete request in the buffer (pipelining-safe).
            while end := request_end(buf):
                del buf[:end]
                try:
                    await stream.send_all(response)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def serve(
    path: str,
    response: bytes,
    *,
    backlog: int = 1024,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    old = os.umask(0o177)  # socket 0600, like the daemon's
    try:
        await sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(backlog)
    listener = trio.SocketListener(sock)

    async def _handler(stream: trio.SocketStream) -> None:
        await handle(stream, response)

    task_status.started()
    await trio.serve_listeners(_handler, [listener])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--response-file", required=True, type=Path)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    response = args.response_file.read_bytes()
    if not response.startswith(b"HTTP/1.1 "):
        print("floor_server: the response file is not an HTTP/1.1 response", file=sys.stderr)
        return 2

    async def _main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, args.socket, response)
            if args.ready_file:
                args.ready_file.write_text("ready\n")
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(_main)
    return 0


if __name__ == "__main__":
    sys.exit(main())
