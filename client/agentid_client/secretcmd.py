"""``agentid-helper secret set|delete``: the blueprint secret in the keyring.

keyring is imported here only. Entry: service ``agentid-helper``, user = the
blueprint app id (what the daemon's ``blueprint_credential = "keyring"``
reads). The secret comes from stdin when it is not a terminal, else from a
hidden prompt; it is never echoed or printed.
"""

from __future__ import annotations

from typing import Any, TextIO

from .failures import EXIT_CONFIG, EXIT_USAGE, ClientError, UsageError
from .redact import quoted

SERVICE = "agentid-helper"
MAX_SECRET_CHARS = 16 * 1024
NO_BACKEND_HINTS = [
    "install and unlock a Secret Service provider (e.g. `apt install gnome-keyring`) and run "
    "inside a D-Bus session (`dbus-run-session -- sh`),",
    'or skip the keyring: blueprint_credential = { secret_file = "/path" } in config.toml',
]


def is_guid(value: str) -> bool:
    parts = value.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12]:
        return False
    return all(c in "0123456789abcdefABCDEF" for p in parts for c in p)


def usable_backend() -> tuple[Any, str | None]:
    """(keyring module, problem or None). A fail/null backend is a problem."""
    try:
        import keyring
        import keyring.backends.fail
    except ImportError as exc:
        return None, f"the keyring package is not installed ({exc.name})"
    backend = keyring.get_keyring()
    inner = getattr(backend, "backends", None)
    candidates = list(inner) if inner is not None else [backend]
    usable = [
        b
        for b in candidates
        if not isinstance(b, keyring.backends.fail.Keyring)
        and type(b).__module__ != "keyring.backends.null"
    ]
    if not usable:
        return (
            keyring,
            f"no usable keyring backend (found {type(backend).__module__}."
            f"{type(backend).__name__})",
        )
    return keyring, None


def _read_secret(stdin: TextIO, stderr: TextIO) -> str:
    if stdin.isatty():
        import getpass

        value = getpass.getpass("blueprint secret (input hidden): ", stream=stderr)
    else:
        value = stdin.read(MAX_SECRET_CHARS + 1)
        if len(value) > MAX_SECRET_CHARS:
            raise ClientError("the secret on stdin is larger than 16 KiB", EXIT_USAGE)
    value = value.strip()
    if not value:
        raise ClientError("empty secret: nothing stored", EXIT_USAGE)
    return value


def run_secret(
    action: str, blueprint_app_id: Any, stdin: TextIO, stdout: TextIO, stderr: TextIO
) -> int:
    if action not in ("set", "delete"):
        raise UsageError("secret: missing action (set or delete)", "secret")
    if not blueprint_app_id:
        raise UsageError("secret: --blueprint-app-id is required", "secret")
    app_id = str(blueprint_app_id).strip().lower()
    if not is_guid(app_id):
        raise UsageError(
            f"secret: --blueprint-app-id {quoted(blueprint_app_id)} is not a GUID", "secret"
        )
    keyring, problem = usable_backend()
    if problem:
        raise ClientError(problem, EXIT_CONFIG, NO_BACKEND_HINTS)
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        if action == "set":
            keyring.set_password(SERVICE, app_id, _read_secret(stdin, stderr))
            stdout.write(
                f"stored the secret of blueprint {app_id} in the keyring "
                f"({type(keyring.get_keyring()).__name__})\n"
            )
        else:
            try:
                keyring.delete_password(SERVICE, app_id)
            except PasswordDeleteError:
                raise ClientError(f"no secret stored for blueprint {app_id}", EXIT_USAGE) from None
            stdout.write(f"deleted the secret of blueprint {app_id} from the keyring\n")
    except KeyringError as exc:
        raise ClientError(
            f"keyring error: {type(exc).__name__}: {exc}", EXIT_CONFIG, NO_BACKEND_HINTS
        ) from None
    return 0
