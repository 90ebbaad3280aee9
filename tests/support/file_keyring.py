"""A keyring backend storing into a JSON file (``AGENTID_TEST_KEYRING_FILE``).

For tests that run the real ``agentid-helper`` in a subprocess without a
Secret Service: selected with ``PYTHON_KEYRING_BACKEND=file_keyring.FileKeyring``
and ``tests/support/`` on ``PYTHONPATH``. The gnome-keyring integration tests cover
the real backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @property
    def _path(self) -> Path:
        return Path(os.environ["AGENTID_TEST_KEYRING_FILE"])

    def _load(self) -> dict[str, str]:
        return json.loads(self._path.read_text()) if self._path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        data.pop(f"{service}/{username}")
        self._path.write_text(json.dumps(data))
