"""The configuration schema: one table of every key, from which the rest derives.

Each :class:`Key` says where it may appear (the top level, ``[daemon]``,
``[defaults]``, ``[profiles.NAME]``, ``[git."HOST"]``, a token request), its
type as users read it, its default, its validator and its documentation. The
key sets (:func:`keys`), the validation of the file and of requests, their
error messages and the reference tables of docs/configuration.md
(:func:`reference_tables`) all come from :data:`SCHEMA`.

Validators take the raw value and the config file's directory (``None`` for
a request or the environment) and return the canonical value, or raise
``ValueError`` with a reason that never repeats a secret. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentid_client.contract import MAX_USER_TOKEN_CHARS

from . import fields as F
from .claims import capabilities
from .errors import InvalidRequest
from .mi_protocol import parse_listen
from .models import DEFAULT_AUTHORITY_HOST, DEFAULT_SCOPE, CredentialSpec, Mode
from .scopes import normalise_scopes

Where = Literal["top", "daemon", "defaults", "profile", "git", "request"]
Validator = Callable[[Any, Path | None], Any]

# Where a key may appear, and the heading of its reference table.
SECTIONS: dict[Where, str] = {
    "top": "Top level",
    "daemon": "`[daemon]`",
    "defaults": "`[defaults]`",
    "profile": "`[profiles.NAME]`",
    "git": '`[git."HOST"]`',
    "request": "token requests",
}
SELECTION: frozenset[Where] = frozenset({"defaults", "profile", "request"})
FILE_ONLY: frozenset[Where] = frozenset({"defaults", "profile"})

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


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # as the reference shows it
    where: frozenset[Where]
    doc: str
    validate: Validator
    default: str = ""  # as the reference shows it; "" = none
    env: str = ""  # environment variable supplying a default (below [defaults])


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


def _plain(check: Callable[[Any], Any]) -> Validator:
    """A validator that does not depend on where the file is."""

    def validate(value: Any, base: Path | None) -> Any:
        return check(value)

    return validate


def _scopes(value: Any, base: Path | None) -> tuple[str, ...]:
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
        raise ValueError(f"{value!r} names an unset environment variable")
    if not expanded.is_absolute() and base is not None:
        expanded = base / expanded
    return os.path.normpath(expanded)


def _path(value: Any, base: Path | None) -> str:
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
            f'{value!r} is not a credential source: use "keyring", "workload_identity" or a '
            'table such as { secret_file = "/path" }'
            + did_you_mean(word, CREDENTIAL_WORDS)
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
            f"unknown credential source {kind!r}{did_you_mean(kind, CREDENTIAL_KINDS)}; "
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
                f'managed_identity {value!r} must be "system", a client id (GUID), or a table '
                "{ object_id = ... } or { resource_id = ... }"
            ) from None
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(
            "managed_identity must be \"system\", a client id, or a table with one of "
            + ", ".join(MANAGED_IDENTITY_ID_KINDS)
        )
    ((kind, ident),) = value.items()
    if kind not in MANAGED_IDENTITY_ID_KINDS:
        raise ValueError(
            f"managed_identity: unknown key {kind!r}"
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


def _listen(value: Any, base: Path | None) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError("must be a string HOST:PORT such as 127.0.0.1:8081")
    return parse_listen(value)


def _profile_ref(value: Any, base: Path | None) -> str:
    # Whether the profile exists is checked once the whole file is read.
    if not isinstance(value, str) or not value:
        raise ValueError("must name a profile")
    return value


# ---- the values a file holds ------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A validated ``[defaults]`` or ``[profiles.NAME]`` table; ``None`` = not set.

    Its fields are :func:`keys` ``("profile")`` (tests/test_config_schema.py).
    """

    tenant_id: str | None = None
    authority_host: str | None = None
    ca_bundle: str | None = None
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


@dataclass(frozen=True)
class DaemonSettings:
    """The validated ``[daemon]`` table."""

    idle_timeout_s: float = 3600.0
    # The sidecar's fixed managed identity endpoint: listen and header_file
    # together (config_file checks the pair); profile defaults to default_profile.
    managed_identity_listen: tuple[str, int] | None = None
    managed_identity_header_file: str | None = None
    managed_identity_profile: str | None = None
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


# ---- the table ----------------------------------------------------------------

SCHEMA: tuple[Key, ...] = (
    Key(
        "default_profile",
        "string",
        frozenset({"top"}),
        "the profile used when a request names none; must name a profile of the file",
        _profile_ref,
    ),
    Key(
        "idle_timeout_s",
        "positive number",
        frozenset({"daemon"}),
        "a key not requested for this long stops being refreshed (a reload applies it)",
        _plain(F.positive_number),
        default=f"{DaemonSettings().idle_timeout_s:g}",
    ),
    Key(
        "managed_identity_listen",
        "string `HOST:PORT`",
        frozenset({"daemon"}),
        "a fixed managed identity endpoint (sidecar mode), opened at start-up; loopback "
        "addresses only (`127.0.0.1:8081`); needs `managed_identity_header_file`",
        _listen,
    ),
    Key(
        "managed_identity_header_file",
        "path",
        frozenset({"daemon"}),
        "the sidecar session's `X-IDENTITY-HEADER`: read from this file (32 to 512 "
        "characters of `A-Z a-z 0-9 - . _ ~ + / =`), or created there (0600, 256 random "
        "bits) when absent; needs `managed_identity_listen`",
        _path,
    ),
    Key(
        "managed_identity_profile",
        "string",
        frozenset({"daemon"}),
        "the profile whose tokens the sidecar session serves (default: `default_profile`); "
        "must name a profile of the file",
        _profile_ref,
    ),
    Key(
        "obo_session_max_age_s",
        "positive number",
        frozenset({"daemon"}),
        "a long-running OBO session (`get --obo-session`) ends this long after a user "
        "token started it (24 h): its refresh token is forgotten and a user token must "
        "start it again (a reload applies it to running sessions)",
        _plain(F.positive_number),
        default=f"{DaemonSettings().obo_session_max_age_s:g}",
    ),
    Key(
        "profile",
        "string",
        frozenset({"request"}),
        "the profile to use (default: `default_profile`)",
        _plain(F.profile_name),
    ),
    Key(
        "tenant_id",
        "string",
        SELECTION,
        "a tenant GUID or a domain such as `contoso.onmicrosoft.com` (`common`, "
        "`organizations` and `consumers` are refused); lower-cased",
        _plain(F.tenant),
        env="AZURE_TENANT_ID",
    ),
    Key(
        "authority_host",
        "string",
        FILE_ONLY,
        "`https://host[:port]` of the identity provider, without a path",
        _plain(F.authority_host),
        default=DEFAULT_AUTHORITY_HOST,
        env="AZURE_AUTHORITY_HOST",
    ),
    Key(
        "ca_bundle",
        "path",
        FILE_ONLY,
        "PEM file of extra trusted CAs (a TLS proxy, the emulator), added to the system "
        "roots; wins over `REQUESTS_CA_BUNDLE`",
        _path,
    ),
    Key(
        "blueprint_app_id",
        "GUID",
        SELECTION,
        "the agent identity blueprint's app id (required after merging); the AKS workload "
        "identity webhook sets `AZURE_CLIENT_ID` to it",
        _plain(F.guid),
        env="AZURE_CLIENT_ID",
    ),
    Key(
        "agent_identity_app_id",
        "GUID",
        SELECTION,
        "the agent identity's app id (required after merging)",
        _plain(F.guid),
    ),
    Key(
        "scope",
        "string or array of strings",
        SELECTION,
        "space-separated scopes; `AutonomousApp` needs one `/.default` scope, the "
        "delegated modes also take short Graph scopes such as `User.Read`",
        _scopes,
        default=DEFAULT_SCOPE,
    ),
    Key(
        "mode",
        "string",
        SELECTION,
        "`AutonomousApp`, `OBO` or `AutonomousUser` (any case)",
        _plain(F.mode),
        default=Mode.AUTONOMOUS_APP.value,
    ),
    Key(
        "user_upn",
        "string",
        SELECTION,
        "the agent user (`name@domain`) for `AutonomousUser`; not with `user_object_id`",
        _plain(F.upn),
    ),
    Key(
        "user_object_id",
        "GUID",
        SELECTION,
        "the agent user's object id for `AutonomousUser`",
        _plain(F.guid),
    ),
    Key(
        "user_token",
        "string",
        frozenset({"request"}),
        f"the signed-in user's token (a JWT, at most {MAX_USER_TOKEN_CHARS} characters) "
        "for `OBO`; never in the file",
        _plain(F.user_token),
    ),
    Key(
        "obo_session",
        "string",
        frozenset({"request"}),
        "`OBO` only: the name of a long-running session (1-128 letters, digits or "
        "`. _ - : @`); with a `user_token` it starts the session, without one it "
        "continues it (see Long-running OBO sessions)",
        _plain(F.obo_session_name),
    ),
    Key(
        "blueprint_credential",
        '"keyring" or table',
        FILE_ONLY,
        "where the blueprint's credential comes from: `\"keyring\"`, "
        "`\"workload_identity\"`, or one of "
        + ", ".join(f"`{{ {kind} = ... }}`" for kind in CREDENTIAL_KINDS),
        credential,
        default='"keyring"',
    ),
    Key(
        "client_capabilities",
        "array of strings",
        SELECTION,
        "capabilities declared to Entra through MSAL's `client_capabilities`: `[\"cp1\"]` "
        "says the client handles claims challenges, so CAE-enabled resources issue "
        "long-lived tokens they can revoke (answered with `get --claims`); cached apart "
        "from tokens without. A request's list adds to the profile's",
        _plain(capabilities),
    ),
    Key(
        "profile",
        "string",
        frozenset({"git"}),
        "the profile whose token git gets for this host; must name a profile of the file",
        _profile_ref,
    ),
)

_TABLES = frozenset({"daemon", "defaults", "profiles", "git"})


def keys(where: Where) -> tuple[str, ...]:
    """The keys allowed in ``where``, in table order."""
    return tuple(k.name for k in SCHEMA if where in k.where)


def top_keys() -> tuple[str, ...]:
    return (*keys("top"), *sorted(_TABLES))


def key(where: Where, name: str) -> Key:
    for candidate in SCHEMA:
        if candidate.name == name and where in candidate.where:
            return candidate
    raise KeyError(f"no key {name!r} in {where}")


def env_defaults() -> tuple[Key, ...]:
    """The keys an environment variable supplies a default for."""
    return tuple(k for k in SCHEMA if k.env and "defaults" in k.where)


def check_request(name: str, value: Any) -> Any:
    """Validate one request field; unknown names and bad values are InvalidRequest."""
    allowed = keys("request")
    if name not in allowed:
        raise InvalidRequest(f"unknown request field {name!r}{did_you_mean(name, allowed)}")
    try:
        return key("request", name).validate(value, None)
    except Described as exc:
        raise InvalidRequest(f"{name}: {exc}") from None
    except ValueError as exc:
        raise InvalidRequest(f"{name} {reason(exc)}") from None


# ---- reference ----------------------------------------------------------------


_MARK = re.compile(r"(<!-- schema:(\w+) -->\n)(.*?)(<!-- /schema -->)", re.DOTALL)


def splice_reference(doc: str) -> str:
    """``doc`` with every ``<!-- schema:WHERE -->`` block replaced by its table."""

    def table(match: re.Match[str]) -> str:
        for where in SECTIONS:
            if where == match.group(2):
                return match.group(1) + reference_table(where) + match.group(4)
        raise ValueError(f"unknown schema section {match.group(2)!r}")

    return _MARK.sub(table, doc)


def reference_table(where: Where) -> str:
    """The markdown table of the keys allowed in ``where`` (docs/configuration.md)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in SCHEMA:
        if where not in k.where:
            continue
        default = f"`{k.default}`" if k.default else "none"
        if k.env:
            default = f"`${k.env}`, else {default}"
        rows.append(f"| `{k.name}` | {k.type} | {default} | {k.doc} |")
    return "\n".join(rows) + "\n"
