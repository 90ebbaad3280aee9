"""Start the emulator and the daemon in a private directory, for benchmarks.

Everything goes through the public contract (docs/api.md, docs/design.md): the console
scripts, their flags and environment variables, the config file keys, the
daemon's HTTP API on its Unix socket and the emulator's ``/_emulator/``
admin endpoints. Nothing here imports the daemon, the client or the
emulator, so the benchmarks measure exactly what a user runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _uds_http import Response, request_once

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
CLIENT = VENV_BIN / "agentid-helper"
DAEMON = VENV_BIN / "agentid-helperd"
EMULATOR = VENV_BIN / "agentid-helper-emulator"
PROFILE = "app"  # the AutonomousApp profile every benchmark config defines

# Variables that would make a child process trust another CA bundle or route
# loopback traffic through a proxy: the benchmarks want the configured CA and
# a direct connection, exactly as on a clean user machine.
_SCRUB_ENV = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


class HarnessError(RuntimeError):
    """A component did not start or answered unexpectedly."""


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def _wait_for(
    predicate: Any, timeout: float, proc: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if predicate():
            return
        time.sleep(0.05)
    raise HarnessError(f"{what} not ready after {timeout:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Emulator:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any] = field(repr=False)  # holds the demo blueprint secret
    ready_file: Path
    log: Path
    _ssl: ssl.SSLContext = field(repr=False, init=False)

    def __post_init__(self) -> None:
        self._ssl = ssl.create_default_context(cafile=self.info["ca_bundle"])
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl)
        )

    @property
    def authority_host(self) -> str:
        return str(self.info["authority_host"]).rstrip("/")

    def admin(self, method: str, path: str, body: Any | None = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.authority_host + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise HarnessError(f"emulator {method} {path}: HTTP {exc.code}") from None
        return json.loads(raw) if raw.strip() else None

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "/_emulator/stats")["token_requests"])

    def reset(self) -> None:
        self.admin("POST", "/_emulator/reset", {})

    def set_faults(self, **faults: Any) -> None:
        self.admin("POST", "/_emulator/faults", faults)

    def clear_faults(self) -> None:
        self.admin("DELETE", "/_emulator/faults")

    def user_token(self, upn: str, audience: str) -> str:
        """A signed-in user's token for ``audience`` (for OBO: the blueprint app id)."""
        tok = self.admin("POST", "/_emulator/users/token", {"upn": upn, "audience": audience})
        return str(tok["access_token"])

    def stop(self) -> None:
        _stop(self.proc)


def start_emulator(
    workdir: Path, *, token_lifetime_s: int | None = None, timeout: float = 60.0
) -> Emulator:
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "emulator-ready.json"
    state = workdir / "emulator-state"
    log = workdir / "emulator.log"
    cmd = [
        str(EMULATOR),
        "--demo",
        "--port",
        "0",
        "--ready-file",
        str(ready),
        "--state-dir",
        str(state),
    ]
    if token_lifetime_s is not None:
        cmd += ["--token-lifetime-s", str(token_lifetime_s)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=child_env()
        )
    try:
        _wait_for(ready.exists, timeout, proc, "emulator", log)
        info = json.loads(ready.read_text())
        emu = Emulator(proc, info, ready, log)
        emu.stats()  # serving, admin reachable
    except BaseException:
        _stop(proc)
        raise
    return emu


def write_config(
    workdir: Path,
    emu: Emulator,
    *,
    idle_timeout_s: float | None = None,
    daemon_settings: dict[str, str] | None = None,
) -> Path:
    """A config with profile ``app`` (AutonomousApp) and the secret in a 0600 file.

    ``daemon_settings`` adds ``[daemon]`` keys, each value a TOML literal
    (``{"sidecar_api_listen": '"127.0.0.1:5000"'}``)."""
    info = emu.info
    secret = workdir / "blueprint.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(str(info["blueprint_secret"]))
    lines = [f'default_profile = "{PROFILE}"', ""]
    settings = dict(daemon_settings or {})
    if idle_timeout_s is not None:
        settings["idle_timeout_s"] = str(idle_timeout_s)
    if settings:
        lines += ["[daemon]", *(f"{k} = {v}" for k, v in settings.items()), ""]
    lines += [
        "[defaults]",
        f'tenant_id = "{info["tenant_id"]}"',
        f'authority_host = "{emu.authority_host}"',
        f'ca_bundle = "{info["ca_bundle"]}"',
        "",
        f"[profiles.{PROFILE}]",
        f'blueprint_app_id = "{info["blueprint_app_id"]}"',
        f'agent_identity_app_id = "{info["agent_identity_app_id"]}"',
        'mode = "AutonomousApp"',
        f'blueprint_credential = {{ secret_file = "{secret}" }}',
        "",
    ]
    path = workdir / "config.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket_path: Path
    config_path: Path
    env: dict[str, str] = field(repr=False)
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """VmRSS of the daemon process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise HarnessError("no VmRSS in /proc status")

    def request(
        self, method: str, path: str, body: Any | None = None, timeout: float = 60.0
    ) -> Response:
        return request_once(str(self.socket_path), method, path, body, timeout=timeout)

    def token(self, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """POST /v1/token; raises (without the body's token) on a non-200."""
        resp = self.request("POST", "/v1/token", body, timeout=timeout)
        if resp.status != 200:
            err = resp.json() or {}
            raise HarnessError(
                f"POST /v1/token -> {resp.status} {err.get('error')}: "
                f"{err.get('error_description')}"
            )
        return dict(resp.json())

    def stop(self) -> None:
        _stop(self.proc)


def _ready(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        return request_once(str(sock), "GET", "/readyz", timeout=2.0).status == 200
    except OSError:
        return False


def start_daemon(
    workdir: Path,
    emu: Emulator,
    *,
    idle_timeout_s: float | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 60.0,
    daemon_settings: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Daemon:
    """The daemon on ``write_config``'s config; ``env`` adds variables
    (the sidecar's ``DownstreamApis__*``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = workdir / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    config = write_config(
        workdir, emu, idle_timeout_s=idle_timeout_s, daemon_settings=daemon_settings
    )
    sock = runtime / "agentid-helper.sock"
    env = child_env(
        {
            "AGENTID_HELPER_SOCKET": str(sock),
            "AGENTID_HELPER_CONFIG": str(config),
            "AGENTID_HELPER_NO_AUTOSTART": "1",
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
            **(env or {}),
        }
    )
    log = workdir / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DAEMON), *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    try:
        _wait_for(lambda: _ready(sock), timeout, proc, "daemon", log)
    except BaseException:
        _stop(proc)
        raise
    return Daemon(proc, sock, config, env, log)


@contextlib.contextmanager
def stack(
    workdir: Path, *, token_lifetime_s: int | None = None, idle_timeout_s: float | None = None
) -> Iterator[tuple[Emulator, Daemon]]:
    """An emulator and a daemon configured against it; both stopped on exit."""
    emu = start_emulator(workdir, token_lifetime_s=token_lifetime_s)
    try:
        daemon = start_daemon(workdir, emu, idle_timeout_s=idle_timeout_s)
        try:
            yield emu, daemon
        finally:
            daemon.stop()
    finally:
        emu.stop()


def components_available() -> dict[str, bool]:
    """Which console scripts exist and at least answer ``--help``."""
    out = {}
    for name, exe in (("client", CLIENT), ("daemon", DAEMON), ("emulator", EMULATOR)):
        try:
            rc = subprocess.run(
                [str(exe), "--help"], capture_output=True, timeout=30, env=child_env()
            ).returncode
        except (OSError, subprocess.TimeoutExpired):
            rc = -1
        out[name] = rc == 0
    return out


def machine() -> str:
    cores = os.cpu_count() or 0
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cores} cores, {model}, Python {sys.version.split()[0]}"
