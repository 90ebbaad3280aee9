"""TCP options the emulator's HTTP servers set on every accepted connection."""

from __future__ import annotations

import socket


def no_delay(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm on an accepted connection.

    ``BaseHTTPRequestHandler`` writes a reply in two sends (the headers at
    ``end_headers``, then the body). With Nagle on, the body waits until the
    client acknowledges the headers, and the client (which has nothing to
    send) delays that ACK by up to 40 ms on Linux: every round trip to the
    emulator cost about 45 ms on loopback, for well under 1 ms of work
    (measured 2026-12-03, bench/RESULTS.md section 7). Entra's front ends
    answer without that stall, and the daemon's and the no-daemon path's
    timings are only comparable without it. urllib3 sets TCP_NODELAY on its
    side for the same reason.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
