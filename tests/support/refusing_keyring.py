"""A keyring backend that is usable but refuses every write (a locked collection
that will not unlock), for ``PYTHON_KEYRING_BACKEND=refusing_keyring.RefusingKeyring``
with tests/support on ``PYTHONPATH``."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError, PasswordSetError


class RefusingKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError("the collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise PasswordDeleteError("the collection is locked")
