"""Registers identity sessions straight over the daemon's socket (run as a script).

python session_registrar.py --socket PATH many N --out PATH
    registers N sessions from this one process (all on one listener),
    writes {"201": count, "429": count, ...} to --out, then waits for stdin
    to close (the sessions live as long as this process).
python session_registrar.py --socket PATH send-and-exit
    sends one registration (with its listener) and exits at once, without
    reading the answer: the daemon sees a peer that is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path

from agentid_client import transport

REQUEST = (
    b"POST /v1/identity-sessions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


def _listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0))


def many(path: str, count: int, out: Path) -> None:
    listener = _listener()
    statuses: Counter[str] = Counter()
    for _ in range(count):
        resp = transport.request(
            path,
            "POST",
            "/v1/identity-sessions",
            {},
            deadline=time.monotonic() + 30,
            pass_fd=listener.fileno(),
        )
        statuses[str(resp.status)] += 1
    out.write_text(json.dumps(statuses) + "\n")
    sys.stdin.read()


def send_and_exit(path: str) -> None:
    listener = _listener()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    fds = listener.fileno().to_bytes(4, sys.byteorder)
    conn.sendmsg([REQUEST], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    sub = parser.add_subparsers(dest="action", required=True)
    many_parser = sub.add_parser("many")
    many_parser.add_argument("count", type=int)
    many_parser.add_argument("--out", type=Path, required=True)
    sub.add_parser("send-and-exit")
    args = parser.parse_args()
    if args.action == "many":
        many(args.socket, args.count, args.out)
    else:
        send_and_exit(args.socket)


if __name__ == "__main__":
    main()
