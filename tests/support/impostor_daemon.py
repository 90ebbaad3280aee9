"""An attacker's stand-in daemon for the two-uid trust tests (run as a script).

It listens where a victim's client might look, records every byte it is sent
(to ``--log``, one line per connection: the byte count, then the bytes as
repr) and answers any request with an attacker's token. It is the impostor
a real client must never talk to.

    python impostor_daemon.py --socket PATH --log PATH --ready PATH
        [--make-dirs]        create the socket's directory and its parent 0777 first
        [--drop-to USER]     bind as the caller, then become USER before listen():
                             SO_PEERCRED reports who called listen()
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import socket

ATTACKER_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.attacker"


def _answer() -> bytes:
    body = json.dumps(
        {
            "access_token": ATTACKER_TOKEN,
            "token_type": "Bearer",
            "expires_on": 4102444800,
            "refresh_on": 4102441200,
            "scope": "https://graph.microsoft.com/.default",
            "mode": "AutonomousApp",
            "source": "cache",
            "daemon": {"pid": os.getpid()},
            "entries": [],
        }
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(2)
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
            data += chunk
    except (TimeoutError, OSError):
        pass
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--make-dirs", action="store_true")
    parser.add_argument("--drop-to")
    args = parser.parse_args()
    directory = os.path.dirname(args.socket)
    if args.make_dirs:
        for path in (os.path.dirname(directory), directory):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    os.chmod(args.socket, 0o777)
    if args.drop_to:
        user = pwd.getpwnam(args.drop_to)
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    srv.listen(16)
    with open(args.ready, "w") as fh:
        fh.write(str(os.getpid()))
    while True:
        conn, _ = srv.accept()
        with conn:
            data = _read_request(conn)
            with open(args.log, "a") as log:
                log.write(f"{len(data)} {data!r}\n")
            if data:
                with contextlib.suppress(OSError):
                    conn.sendall(_answer())


if __name__ == "__main__":
    main()
