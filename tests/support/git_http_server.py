"""A fake HTTPS git host: ``git http-backend`` as CGI behind a token check.

Smart HTTP is served by the real ``git http-backend`` (``GIT_PROJECT_ROOT``
holds bare repositories). In front of it, every request must carry a token the
:class:`~token_gate.TokenGate` accepts, either as the password of HTTP Basic
(what git 2.39 sends from a credential helper's ``username``/``password``) or
as ``Authorization: Bearer`` (newer git with ``authtype``/``credential``).
Anything else gets ``401`` with ``WWW-Authenticate: Basic realm="agentid"``,
which is what makes git ask its credential helper (``get``) and, after a
rejected credential, tell it to forget it (``erase``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from https_server import GatedHTTPSServer, QuietHandler
from tls_certs import ServerTls
from token_gate import TokenGate, TokenRejected

CGI_TIMEOUT_S = 30.0
MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    status: int
    authenticated: bool


class GitHttpHandler(QuietHandler):
    protocol_version = "HTTP/1.1"  # 100-continue and keep-alive for 401s
    server: GitHttpServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    # -- auth ---------------------------------------------------------------

    def _handle(self) -> None:
        token = self.bearer_or_basic_password()
        if token is None:
            return self._challenge("no credentials")
        try:
            self.server.gate.verify(token)
        except TokenRejected as exc:
            return self._challenge(str(exc))
        try:
            body = self._read_body()
        except ValueError as exc:
            return self._plain(400, f"bad request body: {exc}\n")
        self._run_backend(body)

    def _challenge(self, reason: str) -> None:
        if reason != "no credentials":
            with self.server.lock:
                self.server.rejections.append(reason)
        # The request body (if any) is not read: close so the stream stays sane.
        self.close_connection = True
        data = b"Authentication required\n"
        self._record(401, authenticated=False)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="agentid"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _plain(self, status: int, text: str) -> None:
        data = text.encode()
        self.close_connection = True
        self._record(status, authenticated=True)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _record(self, status: int, *, authenticated: bool) -> None:
        with self.server.lock:
            self.server.requests.append(GitRequest(self.command, self.path, status, authenticated))

    # -- body ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.command != "POST":
            return b""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError("Content-Length out of range")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            size = int(size_line, 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ValueError("chunked body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after each chunk

    # -- CGI ----------------------------------------------------------------

    def _cgi_env(self, body: bytes) -> dict[str, str]:
        url = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.project_root),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(url.path),
            "QUERY_STRING": url.query,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "agent",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        if enc := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = enc
        if proto := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = proto
        return env

    def _run_backend(self, body: bytes) -> None:
        proc = subprocess.Popen(
            [self.server.git, "http-backend"],
            env=self._cgi_env(body),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin
        assert proc.stdout
        assert proc.stderr
        # Feed stdin and drain stderr in threads so a large pack cannot deadlock.
        feeder = threading.Thread(target=_feed, args=(proc.stdin, body), daemon=True)
        drainer = threading.Thread(target=self._drain_stderr, args=(proc.stderr,), daemon=True)
        feeder.start()
        drainer.start()
        timer = threading.Timer(CGI_TIMEOUT_S, proc.kill)
        timer.start()
        try:
            status, headers = _read_cgi_headers(proc.stdout)
            self._record(status, authenticated=True)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            # Streamed as it comes, chunked: a close-delimited body would need a
            # TLS close_notify that GnuTLS (git's curl) insists on.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := proc.stdout.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            timer.cancel()
            proc.stdout.close()
            try:
                proc.wait(timeout=CGI_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            feeder.join(timeout=5)
            drainer.join(timeout=5)

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        data = stream.read()
        if data.strip():
            with self.server.lock:
                self.server.backend_errors.append(data.decode(errors="replace"))


def _feed(stdin: IO[bytes], body: bytes) -> None:
    # The backend may exit without reading everything (e.g. on a bad request).
    with contextlib.suppress(BrokenPipeError):
        stdin.write(body)
    with contextlib.suppress(BrokenPipeError):
        stdin.close()


def _read_cgi_headers(stdout: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    """Parse CGI response headers; ``Status:`` becomes the HTTP status (default 200)."""
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline(8192)
        if not line:
            # The backend died before its headers: that is a server error.
            return 502, [("Content-Type", "text/plain")]
        line = line.rstrip(b"\r\n")
        if not line:
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))


class GitHttpServer(GatedHTTPSServer):
    """``with GitHttpServer(tls, gate, project_root) as git_host: git_host.url``"""

    def __init__(self, tls: ServerTls, gate: TokenGate, project_root: Path) -> None:
        super().__init__(GitHttpHandler, tls, gate)
        git = shutil.which("git")
        if git is None:
            raise FileNotFoundError("git is not installed")
        self.git = git
        self.project_root = project_root
        self.lock = threading.Lock()
        self.requests: list[GitRequest] = []
        self.rejections: list[str] = []
        self.backend_errors: list[str] = []

    @property
    def host(self) -> str:
        """The ``host`` git gives its credential helper for this server."""
        return f"127.0.0.1:{self.port}"


def make_bare_repo(project_root: Path, name: str = "repo.git") -> str:
    """Create ``project_root/name`` with one commit on ``main``; return its sha."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(project_root),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "agentid test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "agentid test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            check=True,
            timeout=30,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        ).stdout.strip()

    project_root.mkdir(parents=True, exist_ok=True)
    bare = project_root / name
    work = project_root / f".{name}.work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=project_root)
    git("init", "-q", "-b", "main", str(work), cwd=project_root)
    (work / "README.md").write_text("served by the agentid-helper integration tests\n")
    git("add", "README.md", cwd=work)
    git("commit", "-q", "-m", "initial commit", cwd=work)
    git("push", "-q", str(bare), "main", cwd=work)
    shutil.rmtree(work)
    return git("rev-parse", "main", cwd=bare)
