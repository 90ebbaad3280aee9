"""A live stack for the reliability suite: emulator + ``agentid-helperd`` + raw HTTP.

Reuses tests/support/helper_stack.py (``HelperSandbox``, ``DaemonProcess``,
``toml_dumps``) for the sandboxed environment and the daemon subprocess; this
module adds what the reliability tests need on top:

- sandboxes rooted in a short ``/tmp`` directory (``AF_UNIX`` paths are
  limited to 107 bytes, pytest's ``tmp_path`` can be longer);
- a config with three profiles (one per mode) for an emulator;
- :func:`http_call`, a bounded HTTP/1.1 request over the daemon's socket, and
  :func:`raw_exchange`, which sends arbitrary bytes and reads until close;
- /proc probes (fd count, RSS) for the soak test.

Imported by bare name: tests/support is on ``sys.path`` (pyproject's pytest
``pythonpath``; no ``__init__.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emulator_config import emulator_config
from emulator_harness import Emulator
from helper_stack import (
    DaemonProcess,
    HelperSandbox,
    describe,
    helper_bin,
)

from agentid_client import transport

__all__ = [
    "DaemonProcess",
    "HelperSandbox",
    "HttpResult",
    "Stack",
    "describe",
    "helper_bin",
    "http_call",
    "poll_until",
    "raw_exchange",
    "stack_config",
    "start_stack",
]

IO_TIMEOUT_S = 20.0


# The client's own HTTP reader: one implementation of the wire format for
# the client, these tests and the e2e helpers.
HttpResult = transport.Response


def http_call(
    sock_path: str | Path,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw_body: bytes | None = None,
    timeout: float = IO_TIMEOUT_S,
) -> HttpResult:
    """One request on a fresh connection (``Connection: close``); JSON *body* or *raw_body*."""
    data = raw_body
    if data is None and body is not None:
        data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(transport.build_request(method, path, data))
        return transport.read_response(sock, method, time.monotonic() + timeout)


def raw_exchange(
    sock_path: str | Path,
    payload: bytes,
    *,
    shutdown_write: bool = True,
    timeout: float = IO_TIMEOUT_S,
    limit: int = 1 << 20,
) -> bytes:
    """Send *payload* as is, then read until the daemon closes (bounded by *timeout*).

    A ``socket.timeout`` escapes: the caller treats it as a hang. A reset by
    the peer while we still write (it answered and closed early) is fine.
    """
    out = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        try:
            sock.sendall(payload)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while len(out) < limit:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


def stack_config(
    emu: Emulator,
    secret_file: Path,
    *,
    idle_timeout_s: float | None = None,
    ca_bundle: str | None = None,
) -> dict[str, Any]:
    """Three profiles on the emulator's demo agent: ``app``, ``user`` and ``obo``."""
    daemon = {"idle_timeout_s": idle_timeout_s} if idle_timeout_s is not None else None
    return emulator_config(
        emu.info, {"secret_file": str(secret_file)}, daemon=daemon, ca_bundle=ca_bundle
    )


class Stack:
    """An emulator, a sandbox and the daemon serving it.

    Not a dataclass on purpose: hypothesis pretty-prints a dataclass's fields
    (ignoring ``repr=False``) when it reports a failing example, and this one
    holds a user token and an environment.
    """

    def __init__(
        self, emulator: Emulator, sandbox: HelperSandbox, daemon: DaemonProcess, obo_user_token: str
    ) -> None:
        self.emulator = emulator
        self.sandbox = sandbox
        self.daemon = daemon
        self.obo_user_token = obo_user_token

    def __repr__(self) -> str:
        return f"<Stack socket={self.socket} pid={self.pid}>"

    @property
    def socket(self) -> str:
        return str(self.sandbox.socket_path)

    @property
    def pid(self) -> int:
        assert self.daemon.process is not None
        return self.daemon.process.pid

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> HttpResult:
        return http_call(self.socket, method, path, body, **kw)

    def selection(self, profile: str) -> dict[str, Any]:
        """The request fields for *profile* (OBO needs the user token in the request)."""
        fields: dict[str, Any] = {"profile": profile}
        if profile == "obo":
            fields["user_token"] = self.obo_user_token
        return fields

    def token(self, profile: str = "app", **options: Any) -> HttpResult:
        return self.call("POST", "/v1/token", {**self.selection(profile), **options})

    def client(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.sandbox.client(*args, **kw)

    def write_config(self, **overrides: Any) -> None:
        secret = self.sandbox.root / "bp.secret"
        self.sandbox.write_config(stack_config(self.emulator, secret, **overrides))


@contextmanager
def short_tempdir(prefix: str = "aidr-") -> Iterator[Path]:
    """A private directory with a short path (for Unix sockets), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def start_stack(
    emu: Emulator,
    *,
    idle_timeout_s: float | None = None,
    ca_bundle: str | None = None,
    extra_env: Mapping[str, str | None] | None = None,
) -> Iterator[Stack]:
    """Run ``agentid-helperd`` against *emu* in a fresh sandbox; stopped on exit."""
    with short_tempdir() as root:
        sandbox = HelperSandbox.create(root / "h", extra_env)
        secret = sandbox.write_secret("bp.secret", emu.blueprint_secret)
        sandbox.write_config(
            stack_config(emu, secret, idle_timeout_s=idle_timeout_s, ca_bundle=ca_bundle)
        )
        user_token = emu.user_token(emu.user_upn, audience=emu.blueprint_app_id)
        daemon = DaemonProcess(sandbox).start()
        try:
            yield Stack(emu, sandbox, daemon, user_token)
        finally:
            daemon.stop()


def poll_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Call *predicate* until it returns something truthy; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def leg_counts(emu: Emulator) -> dict[str, int]:
    return dict(emu.stats()["token_requests"]["by_leg"])
