"""The values of a config file: their validators and the frozen dataclasses they fill.

Validators take the raw value and the config file's directory (``None`` for
a request or the environment) and return the canonical value, or raise
``ValueError`` with a reason that never repeats a secret. Pure: no I/O.
:mod:`config_schema` says which validator each key uses and where.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentid_client.redact import quoted

from ..core.errors import InvalidRequest
from ..core.models import CredentialSpec, Mode
from . import fields as F
from .scopes import normalise_scopes

Validator = Callable[[Any, Path | None], Any]

CREDENTIAL_KINDS = (
    "secret_file",
    "certificate_file",
    "federated_token_file",
    "env",
    "managed_identity",
)
# blueprint_credential's string forms.
CREDENTIAL_WORDS = ("keyring", "workload_identity")
# { managed_identity = { KIND = "..." } }: how a user-assigned identity is named.
MANAGED_IDENTITY_ID_KINDS = ("client_id", "object_id", "resource_id")


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Described(ValueError):
    """A ValueError whose text is a whole description (it names the key itself)."""


def reason(exc: ValueError) -> str:
    """The text after "KEY " (a request) or "key 'KEY': " (the file) for a bad value."""
    text = str(exc)
    if isinstance(exc, Described) or text.startswith(("must", "is ")):
        return text
    return f"is invalid: {text}"


# ---- validators ---------------------------------------------------------------


def plain(check: Callable[[Any], Any]) -> Validator:
    """A validator that does not depend on where the file is."""

    def validate(value: Any, base: Path | None) -> Any:
        return check(value)

    return validate


def scopes_value(value: Any, base: Path | None) -> tuple[str, ...]:
    try:
        return normalise_scopes(value)
    except InvalidRequest as exc:  # its description names the scope
        raise Described(exc.description) from None


def expand_path(value: Any, base: Path | None, *, defer_unset: bool = False) -> str:
    """Expand ``~`` and ``$VARS`` (e.g. ``$CREDENTIALS_DIRECTORY``); relative to ``base``.

    With ``defer_unset`` (credential paths) a path naming an unset variable
    is kept as written: the credential reader expands it when the profile is
    used, so one systemd-only profile does not break the whole file.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty path string")
    expanded = Path(os.path.expandvars(os.path.expanduser(value.strip())))
    if "$" in str(expanded):
        if defer_unset:
            return value.strip()
        raise ValueError(f"{quoted(value)} names an unset environment variable")
    if not expanded.is_absolute() and base is not None:
        expanded = base / expanded
    return os.path.normpath(expanded)


def path_value(value: Any, base: Path | None) -> str:
    return expand_path(value, base)


def credential(value: Any, base: Path | None) -> CredentialSpec:
    """``"keyring"``, ``"workload_identity"`` or a one-key table naming the source."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "keyring":
            return CredentialSpec("keyring", "")
        if word == "workload_identity":
            return CredentialSpec("workload_identity", "")
        raise ValueError(
            f'{quoted(value)} is not a credential source: use "keyring", "workload_identity" or a '
            'table such as { secret_file = "/path" }' + did_you_mean(word, CREDENTIAL_WORDS)
        )
    if not isinstance(value, dict):
        raise ValueError(f'must be "keyring" or a table, not {type(value).__name__}')
    if len(value) != 1:
        raise ValueError(
            f"must have exactly one of {', '.join(CREDENTIAL_KINDS)}; got {sorted(value)}"
        )
    ((kind, location),) = value.items()
    if kind not in CREDENTIAL_KINDS:
        raise ValueError(
            f"unknown credential source {quoted(kind)}{did_you_mean(kind, CREDENTIAL_KINDS)}; "
            f"use one of {', '.join(CREDENTIAL_KINDS)}"
        )
    if kind == "env":
        return CredentialSpec("env", F.env_name(location))
    if kind == "managed_identity":
        return CredentialSpec("managed_identity", managed_identity_location(location))
    return CredentialSpec(kind, expand_path(location, base, defer_unset=True))


def managed_identity_location(value: Any) -> str:
    """``"system"``, ``"<client id>"`` or ``{ client_id|object_id|resource_id = "..." }``.

    The result is :class:`CredentialSpec`'s location: ``system`` or ``KIND=ID``.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "system":
            return "system"
        try:
            return f"client_id={F.guid(text)}"
        except ValueError:
            raise ValueError(
                f'managed_identity {quoted(value)} must be "system", a client id (GUID), '
                "or a table { object_id = ... } or { resource_id = ... }"
            ) from None
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(
            'managed_identity must be "system", a client id, or a table with one of '
            + ", ".join(MANAGED_IDENTITY_ID_KINDS)
        )
    ((kind, ident),) = value.items()
    if kind not in MANAGED_IDENTITY_ID_KINDS:
        raise ValueError(
            f"managed_identity: unknown key {quoted(kind)}"
            f"{did_you_mean(kind, MANAGED_IDENTITY_ID_KINDS)}; use one of "
            + ", ".join(MANAGED_IDENTITY_ID_KINDS)
        )
    if kind == "resource_id":
        if not isinstance(ident, str) or not ident.strip().lower().startswith("/subscriptions/"):
            raise ValueError(
                "managed_identity resource_id must be an Azure resource id "
                "(/subscriptions/.../userAssignedIdentities/NAME)"
            )
        return f"resource_id={ident.strip()}"
    try:
        return f"{kind}={F.guid(ident)}"
    except ValueError:
        raise ValueError(f"managed_identity {kind} must be a GUID") from None


def listen_value(value: Any, base: Path | None) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError("must be a string HOST:PORT such as 127.0.0.1:8081")
    return F.parse_listen(value)


#: uid_t's largest value is (uid_t)-1, which means "no uid" to the kernel.
MAX_UID = 2**32 - 2


def uid_list(value: Any, base: Path | None) -> tuple[int, ...]:
    """An array of numeric uids (``[1000, 1001]``), sorted, without repeats."""
    if not isinstance(value, list):
        raise ValueError("must be an array of numeric uids such as [1001]")
    for uid in value:
        # bool is an int in Python, and TOML's true must not read as uid 1.
        if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid <= MAX_UID:
            raise ValueError(f"must be an array of numeric uids (0 to {MAX_UID}); got {uid!r}")
    return tuple(sorted(set(value)))


def profile_ref(value: Any, base: Path | None) -> str:
    # Whether the profile exists is checked once the whole file is read.
    if not isinstance(value, str) or not value:
        raise ValueError("must name a profile")
    return value


# ---- the values a file holds ------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A validated ``[defaults]`` or ``[profiles.NAME]`` table; ``None`` = not set.

    Its fields are :func:`keys` ``("profile")`` (tests/daemon/config/test_config_schema.py).
    """

    tenant_id: str | None = None
    authority_host: str | None = None
    ca_bundle: str | None = None
    graph_endpoint: str | None = None
    blueprint_app_id: str | None = None
    agent_identity_app_id: str | None = None
    scope: tuple[str, ...] | None = None
    mode: Mode | None = None
    user_upn: str | None = None
    user_object_id: str | None = None
    blueprint_credential: CredentialSpec | None = None
    client_capabilities: tuple[str, ...] | None = None

    def values(self) -> dict[str, Any]:
        """The keys that are set, for merging (defaults < profile < request)."""
        return {k: v for k, v in vars(self).items() if v is not None}


#: ``[daemon] exit_when_idle_s`` when absent, for a daemon the client autostarted:
#: it is started again on demand, so it need not outlive its use by long.
AUTOSTART_EXIT_WHEN_IDLE_S = 900.0


@dataclass(frozen=True)
class DaemonSettings:
    """The validated ``[daemon]`` table."""

    idle_timeout_s: float = 3600.0
    # Seconds with nothing cached after which the daemon exits; 0 = never;
    # None (absent) = the run mode's default (app.exit_when_idle_s).
    exit_when_idle_s: float | None = None
    # The sidecar's fixed managed identity endpoint: listen and header_file
    # together (config_file checks the pair); profile defaults to default_profile.
    managed_identity_listen: tuple[str, int] | None = None
    managed_identity_header_file: str | None = None
    managed_identity_profile: str | None = None
    # Other uids whose connections the endpoint serves (loopback_peers): the
    # app container of a pod running as another user than the sidecar.
    managed_identity_allowed_uids: tuple[int, ...] = ()
    # Microsoft's Agent ID sidecar HTTP API (sidecar_api/), on loopback TCP.
    sidecar_api_listen: tuple[str, int] | None = None
    # A long-running OBO session ends this long after a user token started it
    # (Id.Web keeps sessions for as long as the app wants; a daemon that
    # anyone's processes of this uid can ask needs a bound).
    obo_session_max_age_s: float = 86_400.0


@dataclass(frozen=True)
class FileContents:
    """A validated config file, before it becomes a :class:`config.Config`."""

    default_profile: str | None = None
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    defaults: Profile = field(default_factory=Profile)
    profiles: dict[str, Profile] = field(default_factory=dict)
    git: dict[str, str] = field(default_factory=dict)  # contract.git_key(host) -> profile
