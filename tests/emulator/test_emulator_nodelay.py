"""Both emulator servers accept connections with Nagle's algorithm off.

The HTTP handler sends a reply's headers and its body in two writes; with
Nagle on, the body waited for the client's delayed ACK (about 40 ms per round
trip on loopback, emulator/agentid_emulator/tcp.py), which every benchmark
and test against the emulator paid. Checked on the accepted socket itself, no
timing.
"""

from __future__ import annotations

import socket
from pathlib import Path
from socketserver import TCPServer

from tls_certs import make_server_tls

from agentid_emulator import directory as d
from agentid_emulator.certs import new_key
from agentid_emulator.emulator_state import EmulatorState
from agentid_emulator.imds import ImdsHTTPServer, ImdsService
from agentid_emulator.jwt_tokens import TokenIssuer
from agentid_emulator.legs import TokenService
from agentid_emulator.server import EmulatorHTTPServer


def _state() -> EmulatorState:
    issuer = TokenIssuer("https://127.0.0.1:0", new_key())
    return EmulatorState(TokenService(d.demo_directory(), issuer, token_lifetime_s=3600))


def _accepted_no_delay(server: TCPServer) -> int:
    """TCP_NODELAY on the server's side of one loopback connection."""
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _addr = server.get_request()
            try:
                return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            finally:
                accepted.close()
    finally:
        server.server_close()


def test_token_server_turns_nagle_off(tmp_path: Path) -> None:
    tls = make_server_tls(tmp_path)
    server = EmulatorHTTPServer(0, _state(), tls.cert_file, tls.key_file)
    assert _accepted_no_delay(server) == 1


def test_imds_server_turns_nagle_off() -> None:
    state = _state()
    server = ImdsHTTPServer(0, state, ImdsService(state.service))
    assert _accepted_no_delay(server) == 1
