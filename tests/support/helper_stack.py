"""Run the real ``agentid-helper`` client and ``agentid-helperd`` daemon in a sandbox.

A :class:`HelperSandbox` is a private HOME with XDG dirs, a config file and a
socket path, plus a minimal environment (no inherited proxies, CA overrides,
Azure variables, KUBECONFIG or git settings) that every subprocess of a test
gets. :class:`DaemonProcess` starts the daemon in it and waits until
``/readyz`` answers on its Unix socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator_config import emulator_config, emulator_profile, toml_dumps

from agentid_client import transport
from agentid_client.failures import ClientError

BIN_DIR = Path(sys.executable).parent
CLIENT_TIMEOUT_S = 30.0
DAEMON_READY_TIMEOUT_S = 30.0
DAEMON_STOP_TIMEOUT_S = 10.0

# Real resources' app ids, as a user would configure them (the emulator mints
# tokens for any resource): the AKS AAD server and Azure DevOps.
KUBE_RESOURCE = "6dae42f8-4368-4678-94ff-3960e28e3630"
GIT_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"


def require_tools(*tools: str) -> None:
    """Fail (never skip) when a real tool (kubectl, git, ...) is missing: see tooling.py."""
    from tooling import require_tools as require

    require(*tools)


def helper_bin(name: str) -> str:
    """Absolute path of a console script of this project (the venv's first)."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (run scripts/setup.sh)")
    return found


# -- config: tests/support/emulator_config.py (toml_dumps, emulator_profile) ----------

__all__ = ["emulator_profile", "toml_dumps"]  # re-exported for the integration tests


# -- sandbox -----------------------------------------------------------------


@dataclass
class HelperSandbox:
    root: Path
    env: dict[str, str] = field(repr=False)

    @classmethod
    def create(cls, root: Path, extra_env: Mapping[str, str | None] | None = None) -> HelperSandbox:
        """A sandbox under *root*; *extra_env* adds variables (``None`` removes one)."""
        root.mkdir(parents=True, exist_ok=True)
        dirs = {name: root / name for name in ("home", "config", "data", "cache", "state", "run")}
        for path in dirs.values():
            path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(dirs["run"], 0o700)  # XDG_RUNTIME_DIR must be private
        env = {
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "HOME": str(dirs["home"]),
            "XDG_CONFIG_HOME": str(dirs["config"]),
            "XDG_DATA_HOME": str(dirs["data"]),
            "XDG_CACHE_HOME": str(dirs["cache"]),
            "XDG_STATE_HOME": str(dirs["state"]),
            "XDG_RUNTIME_DIR": str(dirs["run"]),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "AGENTID_HELPER_CONFIG": str(root / "config.toml"),
            "AGENTID_HELPER_SOCKET": str(dirs["run"] / "agentid-helper.sock"),
            # The tests start the daemon themselves, so a failure to reach it
            # shows up as exit 3 instead of a surprise second daemon.
            "AGENTID_HELPER_NO_AUTOSTART": "1",
            # No keyring backend unless a test provides a Secret Service.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        for key, value in (extra_env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return cls(root, env)

    @property
    def config_path(self) -> Path:
        return Path(self.env["AGENTID_HELPER_CONFIG"])

    @property
    def socket_path(self) -> Path:
        return Path(self.env["AGENTID_HELPER_SOCKET"])

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    def write_config(self, data: Mapping[str, Any]) -> Path:
        self.config_path.write_text(toml_dumps(data))
        os.chmod(self.config_path, 0o600)
        return self.config_path

    def write_secret(self, name: str, value: str) -> Path:
        """A 0600 file holding *value* (e.g. a blueprint secret for ``secret_file``)."""
        path = self.root / name
        path.touch(mode=0o600)
        path.write_text(value)
        return path

    def configure_one_profile(
        self,
        info: Mapping[str, Any],
        profile: str,
        *,
        resource: str,
        default_profile: str | None,
        git: Mapping[str, str] | None = None,
        **profile_overrides: Any,
    ) -> None:
        """A config on the emulator (*info*: its ready file) with one AutonomousApp
        profile for *resource*, its blueprint secret in a 0600 ``secret_file``."""
        secret_file = self.write_secret("blueprint.secret", info["blueprint_secret"])
        credential = {"secret_file": str(secret_file)}
        self.write_config(
            emulator_config(
                info,
                credential,
                profiles={
                    profile: emulator_profile(
                        info, resource=resource, credential=credential, **profile_overrides
                    )
                },
                default_profile=default_profile,
                git=git,
            )
        )

    def client(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = CLIENT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``agentid-helper ARGS`` in the sandbox (never raises on a non-zero exit)."""
        return subprocess.run(
            [helper_bin("agentid-helper"), *args],
            input=input,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            cwd=self.root,
            stdin=None if input is not None else subprocess.DEVNULL,
        )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """For assertion messages: argv, exit code and stderr (never stdout: it holds tokens)."""
    return f"{proc.args!r} exited {proc.returncode}; stderr: {proc.stderr.strip()[-2000:]}"


# -- daemon ------------------------------------------------------------------


class DaemonError(RuntimeError):
    pass


class DaemonProcess:
    """``agentid-helperd`` running in a sandbox; logs go to ``daemon.log``."""

    def __init__(self, sandbox: HelperSandbox, argv: Sequence[str] | None = None) -> None:
        self.sandbox = sandbox
        self.argv = list(argv) if argv else [helper_bin("agentid-helperd")]
        self.log_path = sandbox.root / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = DAEMON_READY_TIMEOUT_S) -> DaemonProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.sandbox.env,
                cwd=self.sandbox.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DaemonError(
                    f"daemon exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
                )
            if _http_status(self.sandbox.socket_path, "/readyz") == 200:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise DaemonError(f"daemon not ready within {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=DAEMON_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=DAEMON_STOP_TIMEOUT_S)
        return proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_log_free_of(self, values: Iterable[str]) -> None:
        """Fail if a secret or token (or a JWT's signature alone) reached the log."""
        text = self.log_text()
        for value in values:
            if not value:
                continue
            # A JWT's header and claims are shared/public; its signature is not.
            parts = value.split(".")
            needles = {value, parts[-1]} if len(parts) == 3 and parts[-1] else {value}
            if any(n in text for n in needles):
                raise AssertionError("a secret or token value appears in the daemon log")

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http_status(sock_path: Path, path: str, timeout: float = 2.0) -> int | None:
    """GET *path* over the daemon's Unix socket; the status code, or None if unreachable."""
    try:
        deadline = time.monotonic() + timeout
        return transport.request(str(sock_path), "GET", path, deadline=deadline).status
    except (
        OSError,
        transport.ConnectFailed,
        transport.ConnectionLost,
        transport.DeadlineExceeded,
        ClientError,
    ):
        return None
