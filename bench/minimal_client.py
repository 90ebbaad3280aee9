"""The least a Python client of the daemon can do: a floor for ``agentid-helper get``.

Run as ``python -I -S bench/minimal_client.py PROFILE``: imports only ``os``
and ``_socket`` (what any client needs), sends one ``POST /v1/token`` for
PROFILE to ``$AGENTID_HELPER_SOCKET`` and writes the raw response body to
stdout (/dev/null in the benchmark). No argument parsing, no trust checks, no
JSON parsing, no error handling: not a client anyone should use, only the
measure of what the interpreter, those two imports and one round trip cost.
"""

import _socket
import os
import sys

body = b'{"profile": "%s"}' % sys.argv[1].encode()
sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
sock.connect(os.environ["AGENTID_HELPER_SOCKET"])
sock.sendall(
    b"POST /v1/token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
)
received = b""
while chunk := sock.recv(65536):
    received += chunk
head, _, answer = received.partition(b"\r\n\r\n")
os.write(1, answer + b"\n")
sys.exit(0 if head.startswith(b"HTTP/1.1 200") else 1)
