"""A private D-Bus session with an unlocked gnome-keyring Secret Service.

Headless and as root there is no login session, so the test brings its own:
``dbus-daemon --session`` (foreground, address read from stdout) and
``gnome-keyring-daemon --foreground --unlock --components=secrets`` with a
password on stdin, which creates and unlocks a ``login`` keyring under
``$XDG_DATA_HOME/keyrings``. (An *empty* password does not create the
keyring, and the first write then fails with "Prompt dismissed".)

Every process of the test that should see the keyring gets
:attr:`SecretService.env` (``DBUS_SESSION_BUS_ADDRESS``) merged in.
"""

from __future__ import annotations

import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# Unlocks the throwaway login keyring; protects nothing.
KEYRING_PASSWORD = "agentid-integration-test"

_PROBE = """
import keyring, secretstorage
conn = secretstorage.dbus_init()
collection = secretstorage.get_default_collection(conn)
assert not collection.is_locked(), "default collection is locked"
backend = keyring.get_keyring()
print(type(backend).__module__ + "." + type(backend).__qualname__)
"""


class SecretServiceError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [t for t in ("dbus-daemon", "gnome-keyring-daemon") if shutil.which(t) is None]


class SecretService:
    """``with SecretService(base_env, log_dir) as ss: ... ss.env ...``"""

    def __init__(self, base_env: Mapping[str, str], log_dir: Path) -> None:
        self.base_env = dict(base_env)
        self.log_dir = log_dir
        self.env: dict[str, str] = {}
        self.backend: str = ""
        self._dbus: subprocess.Popen[bytes] | None = None
        self._keyring: subprocess.Popen[bytes] | None = None

    def start(self) -> SecretService:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            address = self._start_dbus()
            self.env = {"DBUS_SESSION_BUS_ADDRESS": address}
            self._start_keyring()
            self.backend = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_dbus(self) -> str:
        with (self.log_dir / "dbus.log").open("wb") as log:
            self._dbus = subprocess.Popen(
                ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                env=self.base_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self._dbus.stdout is not None
        ready, _, _ = select.select([self._dbus.stdout], [], [], START_TIMEOUT_S)
        line = self._dbus.stdout.readline().decode().strip() if ready else ""
        if not line:
            raise SecretServiceError(
                "dbus-daemon printed no address: "
                + (self.log_dir / "dbus.log").read_text(errors="replace")
            )
        return line

    def _start_keyring(self) -> None:
        env = {**self.base_env, **self.env}
        with (self.log_dir / "gnome-keyring.log").open("wb") as log:
            self._keyring = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        assert self._keyring.stdin is not None
        self._keyring.stdin.write(KEYRING_PASSWORD.encode())
        self._keyring.stdin.close()

    def _wait_ready(self) -> str:
        """Wait until the default collection is unlocked; return keyring's backend name."""
        env = {
            k: v for k, v in {**self.base_env, **self.env}.items() if k != "PYTHON_KEYRING_BACKEND"
        }
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if self._keyring is not None and self._keyring.poll() is not None:
                raise SecretServiceError(
                    f"gnome-keyring-daemon exited with {self._keyring.returncode}: "
                    + (self.log_dir / "gnome-keyring.log").read_text(errors="replace")[-2000:]
                )
            probe = subprocess.run(
                [sys.executable, "-c", _PROBE],
                env=env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
            if probe.returncode == 0:
                return probe.stdout.strip()
            last = (probe.stderr.strip().splitlines() or [""])[-1]
            time.sleep(0.1)
        raise SecretServiceError(f"Secret Service not ready: {last}")

    def stop(self) -> None:
        for proc in (self._keyring, self._dbus):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if self._dbus is not None and self._dbus.stdout is not None:
            self._dbus.stdout.close()
        self._keyring = self._dbus = None

    def __enter__(self) -> SecretService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
