"""The managed identity endpoint as an attacker and a careless client see it.

It is the one daemon surface outside the Unix socket's uid check, so: the
header is per session and refused when wrong, missing, or its process has
exited; browsers (Origin/Referer, CORS preflights) and non-loopback Host
names are refused; only GET on its one path; a session cannot be registered
by another uid; the header never reaches the daemon's log.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from graph_stub import GRAPH_RESOURCE
from helper_stack import DaemonProcess, HelperSandbox, describe, helper_bin
from machine_users import MALLORY, require_user
from user_venv import make_user_venv

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "sdk_apps"
PROFILE = "graph-bot"


@dataclass
class Held:
    """A process started by ``exec`` that holds its session until released."""

    proc: subprocess.Popen[str]
    endpoint: str
    header: str
    report: dict[str, Any]

    @property
    def port(self) -> int:
        return int(urlsplit(self.endpoint).port or 0)

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def hold(sandbox: HelperSandbox, *args: str, env: dict[str, str] | None = None) -> Held:
    proc = subprocess.Popen(
        [
            helper_bin("agentid-helper"),
            "exec",
            *args,
            "--",
            sys.executable,
            str(APPS / "hold_session.py"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**sandbox.env, **(env or {})},
        cwd=sandbox.root,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise AssertionError(f"exec failed: {proc.stderr.read() if proc.stderr else ''}")
    report = json.loads(line)
    return Held(proc, report["endpoint"] or "", report["header"] or "", report)


def mi_get(
    endpoint: str,
    *,
    header: str | None,
    method: str = "GET",
    params: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
    path: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    url = urlsplit(endpoint)
    query = urlencode(
        params if params is not None else {"resource": GRAPH_RESOURCE, "api-version": "2019-08-01"}
    )
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        headers = dict(extra or {})
        if header is not None:
            headers["X-IDENTITY-HEADER"] = header
        conn.request(method, f"{path or url.path}?{query}", headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        body = json.loads(raw) if raw else None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def configure(emulator: Any, sandbox: HelperSandbox) -> None:
    info = emulator.info
    sandbox.configure_one_profile(info, PROFILE, resource=GRAPH_RESOURCE, default_profile=PROFILE)


@pytest.fixture
def daemon(
    emulator: Any, sandbox: HelperSandbox, start_daemon: Callable[[], DaemonProcess]
) -> Iterator[DaemonProcess]:
    configure(emulator, sandbox)
    yield start_daemon()


def sessions_count(sandbox: HelperSandbox) -> int:
    """``GET /v1/status`` read directly (the client refuses a socket dir opened up on purpose)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(sandbox.socket_path))
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return int(json.loads(body)["daemon"]["managed_identity"]["sessions"])


def test_exec_exports_the_endpoint_and_removes_shadowing_variables(
    daemon: DaemonProcess, sandbox: HelperSandbox, emulator: Any
) -> None:
    held = hold(
        sandbox,
        env={
            "MSI_ENDPOINT": "http://x",
            "MSI_SECRET": "s",
            "IDENTITY_SERVER_THUMBPRINT": "t",
            "IMDS_ENDPOINT": "http://y",
        },
    )
    try:
        assert held.endpoint.startswith("http://127.0.0.1:")
        assert held.endpoint.endswith("/msi/token")
        assert len(held.header) >= 22
        assert held.report["token_var"] is True
        assert held.report["shadowing"] == []
        status, headers, body = mi_get(held.endpoint, header=held.header)
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
        assert body["expires_on"].isdigit()
        assert int(body["expires_on"]) > time.time()
        assert body["resource"] == GRAPH_RESOURCE
        assert body["token_type"] == "Bearer"
        assert body["client_id"] == emulator.info["agent_identity_app_id"]
        # client_id naming this session's agent is fine; another one is a 400.
        ok, _, _ = mi_get(
            held.endpoint,
            header=held.header,
            params={
                "resource": GRAPH_RESOURCE,
                "api-version": "2019-08-01",
                "client_id": emulator.info["agent_identity_app_id"].upper(),
            },
        )
        assert ok == 200
        other, _, err = mi_get(
            held.endpoint,
            header=held.header,
            params={
                "resource": GRAPH_RESOURCE,
                "api-version": "2019-08-01",
                "client_id": emulator.info["blueprint_app_id"],
            },
        )
        assert other == 400
        assert "not this session's agent identity" in err["message"]
    finally:
        held.release()
    log = daemon.log_text()
    assert held.header not in log


def test_no_identity_endpoint_opts_out(daemon: DaemonProcess, sandbox: HelperSandbox) -> None:
    held = hold(sandbox, "--no-identity-endpoint", env={"MSI_ENDPOINT": "http://x"})
    held.release()
    assert held.endpoint == ""
    assert held.header == ""
    assert held.report["token_var"] is True
    assert held.report["shadowing"] == ["MSI_ENDPOINT"]


@pytest.mark.parametrize("endpoint", [True, False], ids=["endpoint", "no-endpoint"])
def test_a_command_that_cannot_run_is_127_or_126_as_in_a_shell(
    daemon: DaemonProcess, sandbox: HelperSandbox, endpoint: bool, tmp_path: Path
) -> None:
    """With the endpoint exec starts CMD as its child, without it exec becomes CMD:
    either way a missing command is 127 and one that cannot run is 126."""
    flags = [] if endpoint else ["--no-identity-endpoint"]
    missing = sandbox.client("exec", *flags, "--", "agentid-no-such-command")
    assert missing.returncode == 127, describe(missing)
    assert "agentid-no-such-command: command not found" in missing.stderr
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("#!/bin/sh\n")
    denied = sandbox.client("exec", *flags, "--", str(not_executable))
    assert denied.returncode == 126, describe(denied)
    assert "permission denied" in denied.stderr


def test_endpoint_refusals(daemon: DaemonProcess, sandbox: HelperSandbox) -> None:
    held = hold(sandbox)
    try:
        ep, good = held.endpoint, held.header
        assert mi_get(ep, header=None)[0] == 401
        wrong = good[:-1] + ("A" if good[-1] != "A" else "B")
        status, _, body = mi_get(ep, header=wrong)
        assert status == 401
        assert body["statusCode"] == 401
        assert wrong not in json.dumps(body)
        assert mi_get(ep, header="")[0] == 401
        # Browsers: Origin or Referer is refused; a CORS preflight gets no CORS answer.
        for extra in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page"}):
            status, headers, _ = mi_get(ep, header=good, extra=extra)
            assert status == 403
            assert not any(k.startswith("access-control-") for k in headers)
        status, headers, _ = mi_get(
            ep,
            header=None,
            method="OPTIONS",
            extra={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-identity-header",
            },
        )
        assert status >= 400
        assert not any(k.startswith("access-control-") for k in headers)
        # DNS rebinding: a page's own host name resolving to 127.0.0.1.
        assert mi_get(ep, header=good, extra={"Host": "evil.example"})[0] == 403
        # Only GET, only the one path.
        for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):
            assert mi_get(ep, header=good, method=method)[0] == 405, method
        assert mi_get(ep, header=good, path="/v1/token")[0] == 404
        assert mi_get(ep, header=good, path="/metadata/identity/oauth2/token")[0] == 404
        # Malformed requests are 400s, and the endpoint stays up.
        assert mi_get(ep, header=good, params={"resource": GRAPH_RESOURCE})[0] == 400
        assert mi_get(ep, header=good, params={"api-version": "2019-08-01"})[0] == 400
        assert mi_get(ep, header=good)[0] == 200
    finally:
        held.release()
    log = daemon.log_text()
    assert good not in log
    assert wrong not in log
    assert "missing or wrong X-IDENTITY-HEADER" in log


def test_header_of_an_exited_process_is_refused(
    daemon: DaemonProcess, sandbox: HelperSandbox
) -> None:
    held = hold(sandbox)
    assert mi_get(held.endpoint, header=held.header)[0] == 200
    assert sessions_count(sandbox) == 1
    held.release()
    deadline = time.monotonic() + 15
    while sessions_count(sandbox) != 0:
        assert time.monotonic() < deadline, "the session outlived its process"
        time.sleep(0.05)
    # Each exec owns its endpoint's port: with the process gone, nothing listens
    # there any more (and nobody could have taken the port while it lived).
    with pytest.raises(ConnectionRefusedError):
        mi_get(held.endpoint, header=held.header)
    # Another exec gets its own header and port; the old header stays refused.
    second = hold(sandbox)
    try:
        assert second.header != held.header
        assert mi_get(second.endpoint, header=held.header)[0] == 401
        assert mi_get(second.endpoint, header=second.header)[0] == 200
    finally:
        second.release()


def test_status_never_shows_a_header(daemon: DaemonProcess, sandbox: HelperSandbox) -> None:
    held = hold(sandbox)
    try:
        for args in (("status",), ("status", "--json")):
            shown = sandbox.client(*args)
            assert shown.returncode == 0, describe(shown)
            assert held.header not in shown.stdout + shown.stderr
    finally:
        held.release()


@pytest.fixture
def open_socket_dir() -> Iterator[Path]:
    """A socket directory outside pytest's private temp tree, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="agentid-mi-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_another_uid_cannot_register_a_session(
    emulator: Any,
    sandbox: HelperSandbox,
    start_daemon: Callable[[], DaemonProcess],
    open_socket_dir: Path,
) -> None:
    """Even with the socket's directory opened up by mistake, SO_PEERCRED refuses mallory."""
    mallory = require_user(MALLORY)
    configure(emulator, sandbox)
    sandbox.env["AGENTID_HELPER_SOCKET"] = str(open_socket_dir / "agentid-helper.sock")
    daemon = start_daemon()
    # Make the socket reachable for mallory: the uid check must be what stops her.
    os.chmod(open_socket_dir, 0o755)
    os.chmod(sandbox.socket_path, 0o666)
    home = open_socket_dir / "mallory-home"
    home.mkdir()
    os.chown(home, mallory.pw_uid, mallory.pw_gid)
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "s.sendall(b'POST /v1/identity-sessions HTTP/1.1\\r\\nHost: x\\r\\n'\n"
        "          b'Content-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}')\n"
        "print(s.recv(65536).split(b'\\r\\n')[0].decode())\n"
    )
    proc = subprocess.run(
        [
            "setpriv",
            f"--reuid={mallory.pw_uid}",
            f"--regid={mallory.pw_gid}",
            "--init-groups",
            sys.executable,
            "-c",
            code,
            str(sandbox.socket_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"HOME": str(home), "PATH": "/usr/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1] == "403", proc.stdout
    assert sessions_count(sandbox) == 0
    # And the client run as mallory fails cleanly (no endpoint for her). It runs
    # on a Python she can execute (the project venv's may sit under /root).
    user_python = make_user_venv(open_socket_dir / "mallory-python")
    client = subprocess.run(
        [
            "setpriv",
            f"--reuid={mallory.pw_uid}",
            f"--regid={mallory.pw_gid}",
            "--init-groups",
            str(user_python),
            "-m",
            "agentid_client",
            "exec",
            "--",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "AGENTID_HELPER_SOCKET": str(sandbox.socket_path),
            "AGENTID_HELPER_NO_AUTOSTART": "1",
        },
    )
    assert client.returncode == 3, client.stderr
    assert sessions_count(sandbox) == 0
    assert "refused connection from another user" in daemon.log_text()
