"""The daemon's verdict on a config file, for ``doctor``, without importing the daemon.

The client is stdlib-only and stays below the daemon (an import-linter
contract in pyproject.toml), but ``doctor`` must judge the config with the
daemon's own loader, or it would pass files the daemon refuses. So it runs
``agentid_daemon.config.doctor_view`` in a child interpreter (the daemon is
installed beside the client) and reads the JSON line it prints. The shapes
below are that module's output; tests/test_client_doctor.py runs both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TypedDict

from .contract import CONFIG_VIEW_MODULE
from .failures import EXIT_CONFIG, ClientError

#: Loading a config reads small local files only; a hung child is a bug to report.
VIEW_TIMEOUT_S = 60.0


class TrustedFile(TypedDict):
    """A file the daemon trusts under the config (file_trust checks it)."""

    what: str
    path: str
    secret: bool


class ProfileView(TypedDict):
    name: str
    mode: str | None
    scope: list[str]
    uses_keyring: bool


class ConfigView(TypedDict):
    profiles: list[ProfileView]
    trusted_files: list[TrustedFile]


class ConfigRefused(Exception):
    """The daemon's loader refused the file: its description and hint."""

    def __init__(self, description: str, hint: str | None) -> None:
        super().__init__(description)
        self.description = description
        self.hint = hint


def load_config_view(path: str) -> ConfigView:
    """The daemon's view of the config at ``path``.

    Raises :class:`ConfigRefused` when the loader refuses the file and
    :class:`ClientError` (exit 5) when the daemon side cannot run here.
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-m", CONFIG_VIEW_MODULE, path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VIEW_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClientError(f"cannot run the daemon's config loader: {exc}", EXIT_CONFIG) from None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ClientError(f"cannot load the daemon's config module ({last})", EXIT_CONFIG)
    if not answer.get("ok"):
        raise ConfigRefused(str(answer.get("description")), answer.get("hint"))
    return ConfigView(profiles=answer["profiles"], trusted_files=answer["trusted_files"])
