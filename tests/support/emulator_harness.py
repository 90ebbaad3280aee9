"""The local Entra emulator as a test subprocess: ``Emulator``, ``start_emulator``.

Import from here (``from emulator_harness import Emulator, start_emulator``)
rather than from ``conftest``: with more than one conftest.py in the tree,
``import conftest`` may resolve to another one. The fixtures live in
tests/conftest.py.

``emulator`` (session scope) is one ``--demo`` instance for the whole run;
tests that count requests call ``emulator.reset()`` first. ``emulator_factory``
starts private instances (faults, short lifetimes, seeds) stopped at teardown::

    def test_short(emulator_factory):
        emu = emulator_factory(token_lifetime_s=10)
        emu.set_faults(status=503, count=1)

Extra keyword arguments of the factory become CLI flags
(``token_lifetime_s=10`` -> ``--token-lifetime-s 10``; ``seed=path`` ->
``--seed path`` instead of ``--demo``; ``True`` -> a bare flag).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
ADMIN_TIMEOUT_S = 10.0


class EmulatorError(RuntimeError):
    """An admin call failed, or the emulator did not start."""


class Emulator:
    """A running emulator subprocess and convenience accessors for its ready file."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        info: dict[str, Any],
        state_dir: Path,
        log_path: Path,
    ) -> None:
        self.process = process
        self.info = info
        self.state_dir = state_dir
        self.log_path = log_path
        self._ssl = ssl.create_default_context(cafile=info["ca_bundle"])

    # -- ready-file conveniences -------------------------------------------------
    @property
    def authority_host(self) -> str:
        return str(self.info["authority_host"])

    @property
    def ca_bundle(self) -> str:
        return str(self.info["ca_bundle"])

    @property
    def tenant_id(self) -> str:
        return str(self.info["tenant_id"])

    @property
    def authority(self) -> str:
        """``{authority_host}/{tenant_id}``: what MSAL takes as ``authority``."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def blueprint_app_id(self) -> str:
        return str(self.info["blueprint_app_id"])

    @property
    def blueprint_secret(self) -> str:
        return str(self.info["blueprint_secret"])

    @property
    def agent_identity_app_id(self) -> str:
        return str(self.info["agent_identity_app_id"])

    @property
    def agent_user_upn(self) -> str:
        return str(self.info["agent_user_upn"])

    @property
    def agent_user_object_id(self) -> str:
        return str(self.info["agent_user_object_id"])

    @property
    def user_upn(self) -> str:
        return str(self.info["user_upn"])

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting exactly the emulator's CA."""
        return self._ssl

    # -- admin API ------------------------------------------------------------
    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call an admin endpoint (``path`` like ``/_emulator/stats``); returns its JSON."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.authority_host + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=ADMIN_TIMEOUT_S) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise EmulatorError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        return json.loads(raw) if raw else {}

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "/_emulator/stats")

    def reset(self) -> None:
        self.admin("POST", "/_emulator/reset")

    def set_faults(self, **kw: Any) -> None:
        """``status=429|500|503, retry_after_s=, delay_s=, outage=, count=``."""
        self.admin("POST", "/_emulator/faults", kw)

    def clear_faults(self) -> None:
        self.admin("DELETE", "/_emulator/faults")

    def user_token(
        self, upn: str, audience: str | None = None, lifetime_s: int | None = None
    ) -> str:
        """A user token as an interactive sign-in would give (the input of OBO).

        ``audience`` defaults (in the emulator) to the blueprint: what OBO needs.
        """
        body: dict[str, Any] = {"upn": upn}
        if audience is not None:
            body["audience"] = audience
        if lifetime_s is not None:
            body["lifetime_s"] = lifetime_s
        return str(self.admin("POST", "/_emulator/users/token", body)["access_token"])

    # -- lifecycle ------------------------------------------------------------
    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)

    def log_text(self) -> str:
        """Everything the emulator wrote to stderr so far (one JSON line per request)."""
        return self.log_path.read_text(errors="replace")


def _flag_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is None or value is False:
            continue
        else:
            args += [flag, str(value)]
    return args


def start_emulator(workdir: Path, *, key_template: Path | None = None, **options: Any) -> Emulator:
    """Start ``python -m agentid_emulator`` and wait for its ready file.

    ``key_template``: a state dir whose keys and certificates are copied first
    (skips RSA key generation, which dominates start-up time).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = Path(options.pop("state_dir", None) or workdir / "state")
    if key_template is not None and not state_dir.exists():
        shutil.copytree(key_template, state_dir)
    ready_file = workdir / "ready.json"
    log_path = workdir / "emulator.log"
    options.setdefault("port", 0)
    if "seed" not in options:
        options.setdefault("demo", True)
    argv = [
        sys.executable,
        "-m",
        "agentid_emulator",
        *_flag_args(options),
        "--ready-file",
        str(ready_file),
        "--state-dir",
        str(state_dir),
    ]
    env = dict(os.environ)
    env.pop("REQUESTS_CA_BUNDLE", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready_file.exists():
        if process.poll() is not None:
            raise EmulatorError(
                f"emulator exited with {process.returncode}: "
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
            raise EmulatorError("emulator did not become ready in time")
        time.sleep(0.02)
    info = json.loads(ready_file.read_text())
    return Emulator(process, info, state_dir, log_path)
