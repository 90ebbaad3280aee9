"""A client of the managed identity endpoint for the two-uid tests (run as a script).

Reads the session header from stdin (never argv) and prints one JSON line.

    python loopback_client.py request URL
        one GET with the header; prints {"status": int | null, "reply_bytes": int,
        "outcome": "answered" | "closed" | "reset", "elapsed_s": float}
    python loopback_client.py sdk URL
        azure-identity's ManagedIdentityCredential (App Service protocol, from
        IDENTITY_ENDPOINT / IDENTITY_HEADER) gets a token; prints
        {"ok": bool, "elapsed_s": float, "error": str}
    python loopback_client.py hold URL COUNT [--partial]
        opens COUNT connections and sends nothing (with --partial: the first
        byte of a request, never the rest); prints {"opened": N} once they
        are open, then waits until stdin closes and prints how many the
        server had closed by then: {"closed_by_server": N, "open": N}
        With --partial it first waits (up to 8 s) until at most 16 are still
        open and prints {"settled_open": N}.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from urllib.parse import urlsplit

RESOURCE = "https://vault.azure.net"


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def request(url: str, header: str) -> dict[str, object]:
    host, port = _address(url)
    path = urlsplit(url).path
    start = time.monotonic()
    raw = (
        f"GET {path}?resource={RESOURCE}&api-version=2019-08-01 HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nX-IDENTITY-HEADER: {header}\r\nConnection: close\r\n\r\n"
    ).encode()
    reply = b""
    outcome = "answered"
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(raw)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            outcome = "reset"
    if not reply:
        outcome = "closed" if outcome == "answered" else outcome
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
    return {
        "status": status,
        "reply_bytes": len(reply),
        "outcome": outcome,
        "elapsed_s": time.monotonic() - start,
    }


def sdk(url: str, header: str) -> dict[str, object]:
    os.environ["IDENTITY_ENDPOINT"] = url
    os.environ["IDENTITY_HEADER"] = header
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential()
    start = time.monotonic()
    try:
        token = credential.get_token(RESOURCE + "/.default")
    except Exception as exc:  # the test shows what went wrong
        return {"ok": False, "elapsed_s": time.monotonic() - start, "error": type(exc).__name__}
    return {"ok": bool(token.token), "elapsed_s": time.monotonic() - start, "error": ""}


def _closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def hold(url: str, count: int, partial: bool) -> None:
    address = _address(url)
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(30)
        sock.connect(address)
        if partial:
            sock.sendall(b"G")
        socks.append(sock)
    print(json.dumps({"opened": len(socks)}), flush=True)
    open_socks = socks
    if partial:
        deadline = time.monotonic() + 8
        while len(open_socks) > 16 and time.monotonic() < deadline:
            time.sleep(0.05)
            open_socks = [s for s in open_socks if not _closed_by_server(s)]
        print(json.dumps({"settled_open": len(open_socks)}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    closed = sum(1 for s in socks if s not in open_socks or _closed_by_server(s))
    for sock in socks:
        sock.close()
    print(json.dumps({"closed_by_server": closed, "open": len(socks) - closed}), flush=True)


def main() -> None:
    command, url = sys.argv[1], sys.argv[2]
    if command == "hold":
        hold(url, int(sys.argv[3]), partial="--partial" in sys.argv[4:])
        return
    header = sys.stdin.readline().strip()
    result = request(url, header) if command == "request" else sdk(url, header)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
