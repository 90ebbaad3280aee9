"""The daemon's configuration: TOML file -> :class:`Config` -> :class:`TokenRequest`.

Precedence, lowest first: environment defaults (``AZURE_TENANT_ID``,
``AZURE_AUTHORITY_HOST``, as azure-identity honours them) < ``[defaults]`` <
the profile < the request's fields. Every value is validated when the file is
loaded (errors name the file, the table and the key), so :meth:`Config.resolve`
only validates request fields and the merged combination; it does no I/O.

A missing file is an empty configuration: the daemon still serves requests
that name everything with flags.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentid_client.contract import SELECTION_FIELDS, TOKEN_OPTIONS

from . import fields as F
from .errors import ConfigurationError, InvalidRequest, UnknownProfile
from .models import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_SCOPE,
    AgentRef,
    CredentialSpec,
    Mode,
    TokenRequest,
)
from .resolve_memo import ResolveMemo, memo_key
from .scopes import normalise_scopes, validate_for_mode

APP_NAME = "agentid-helper"
CONFIG_ENV = "AGENTID_HELPER_CONFIG"

TOP_KEYS = ("default_profile", "daemon", "defaults", "profiles", "git")
DAEMON_KEYS = ("idle_timeout_s",)
GIT_KEYS = ("profile",)
PROFILE_KEYS = (
    "tenant_id",
    "authority_host",
    "ca_bundle",
    "blueprint_app_id",
    "agent_identity_app_id",
    "scope",
    "mode",
    "user_upn",
    "user_object_id",
    "blueprint_credential",
)
REQUEST_KEYS = SELECTION_FIELDS
# Request options handled by the broker, tolerated (and ignored) by resolve().
REQUEST_OPTION_KEYS = TOKEN_OPTIONS
CREDENTIAL_KINDS = ("secret_file", "certificate_file", "federated_token_file", "env")
_USER_KEYS = ("user_upn", "user_object_id")

VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "tenant_id": F.tenant,
    "authority_host": F.authority_host,
    "blueprint_app_id": F.guid,
    "agent_identity_app_id": F.guid,
    "scope": normalise_scopes,
    "mode": F.mode,
    "user_upn": F.upn,
    "user_object_id": F.guid,
    "user_token": F.user_token,
}


def did_you_mean(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class DaemonSettings:
    idle_timeout_s: float = 3600.0


@dataclass(frozen=True)
class Config:
    """A loaded, validated configuration.

    ``defaults``, ``profiles`` and ``git`` hold canonical values: scopes are
    normalised tuples, modes are :class:`Mode`, ``blueprint_credential`` is a
    :class:`CredentialSpec` (a keyring spec's location is filled in from the
    blueprint app id at resolve time).
    """

    path: str | None = None
    default_profile: str | None = None
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    defaults: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    git: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_defaults: dict[str, Any] = field(default_factory=dict)
    # Not part of the value: a cache of resolve() results for this object.
    _memo: ResolveMemo = field(default_factory=ResolveMemo, init=False, repr=False, compare=False)

    def profile_names(self) -> list[str]:
        return sorted(self.profiles)

    def resolve(self, fields: Mapping[str, Any]) -> TokenRequest:
        """Merge defaults < profile < request ``fields`` into a validated request.

        Results are remembered per Config (:class:`ResolveMemo`): a Config is
        immutable once loaded, so the same fields always resolve the same way.
        """
        if not isinstance(fields, Mapping):
            raise InvalidRequest("the request body must be a JSON object")
        key = memo_key(fields, ignore=REQUEST_OPTION_KEYS)
        if key is not None:
            found = self._memo.get(key)
            if found is not None:
                return found
        resolved = self._resolve(fields)
        if key is not None:
            self._memo.put(key, resolved)
        return resolved

    def forget_resolved(self) -> None:
        """Drop remembered resolutions (after a reload: they may hold user tokens)."""
        self._memo.clear()

    def _resolve(self, fields: Mapping[str, Any]) -> TokenRequest:
        request: dict[str, Any] = {}
        for key, value in fields.items():
            if key in REQUEST_OPTION_KEYS or value is None:
                continue
            if key not in REQUEST_KEYS:
                raise InvalidRequest(
                    f"unknown request field {key!r}{did_you_mean(str(key), REQUEST_KEYS)}"
                )
            if key == "profile":
                try:
                    request[key] = F.profile_name(value)
                except ValueError as exc:
                    raise InvalidRequest(f"profile {exc}") from None
                continue
            try:
                request[key] = VALIDATORS[key](value)
            except ValueError as exc:
                raise InvalidRequest(f"{key} {reason(exc)}") from None
            except InvalidRequest as exc:
                raise InvalidRequest(f"{key}: {exc.description}", hint=exc.hint) from None

        name = request.pop("profile", None) or self.default_profile
        profile: dict[str, Any] = {}
        if name is not None:
            if name not in self.profiles:
                known = ", ".join(self.profile_names()) or "none configured"
                raise UnknownProfile(
                    f"unknown profile {name!r}{did_you_mean(name, self.profile_names())}; "
                    f"known profiles: {known}"
                )
            profile = self.profiles[name]

        lower = {**self.env_defaults, **self.defaults, **profile}
        if any(k in request for k in _USER_KEYS):
            # The request names its user: a profile's other user field must not
            # collide with it (UPN xor object id).
            for key in _USER_KEYS:
                lower.pop(key, None)
        merged = {**lower, **request}
        return _build_request(merged, request, name)

    @classmethod
    def empty(cls, environ: Mapping[str, str] | None = None) -> Config:
        return cls(env_defaults=_env_defaults(os.environ if environ is None else environ))


def reason(exc: ValueError) -> str:
    text = str(exc)
    return text if text.startswith(("must", "is ")) else f"is invalid: {text}"


def _build_request(
    merged: dict[str, Any], request: dict[str, Any], name: str | None
) -> TokenRequest:
    where = f" (profile {name!r})" if name else ""
    _require_ids(merged, where)
    mode: Mode = merged.get("mode", Mode.AUTONOMOUS_APP)
    scopes: tuple[str, ...] = merged.get("scope") or normalise_scopes(DEFAULT_SCOPE)
    validate_for_mode(scopes, mode)

    user_upn = user_oid = user_token = None
    if mode is Mode.AUTONOMOUS_USER:
        user_upn, user_oid = merged.get("user_upn"), merged.get("user_object_id")
        if user_upn and user_oid:
            raise InvalidRequest(
                f"mode AutonomousUser takes user_upn or user_object_id, not both{where}"
            )
        if not (user_upn or user_oid):
            raise InvalidRequest(
                f"mode AutonomousUser needs the agent user: give --user-upn or "
                f"--user-object-id{where}"
            )
    else:
        given = [k for k in _USER_KEYS if k in request]
        if given:
            raise InvalidRequest(f"{given[0]} is only valid with mode AutonomousUser, not {mode}")
    if mode is Mode.OBO:
        user_token = merged.get("user_token")
        if not user_token:
            raise InvalidRequest(
                "mode OBO needs the user's token: give --user-token-file PATH (or - for stdin)"
            )
    elif "user_token" in request:
        raise InvalidRequest(f"user_token is only valid with mode OBO, not {mode}")

    return TokenRequest(
        agent=_agent_from(merged),
        mode=mode,
        scopes=scopes,
        profile=name,
        user_upn=user_upn,
        user_object_id=user_oid,
        user_token=user_token,
    )


def _require_ids(merged: dict[str, Any], where: str) -> None:
    required = ("tenant_id", "blueprint_app_id", "agent_identity_app_id")
    missing = [k for k in required if k not in merged]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise InvalidRequest(
            f"missing {', '.join(missing)}{where}: give {flags} or set them in a profile "
            "or [defaults]" + (" (or AZURE_TENANT_ID)" if "tenant_id" in missing else "")
        )


def _agent_from(merged: dict[str, Any]) -> AgentRef:
    spec: CredentialSpec = merged.get("blueprint_credential") or CredentialSpec("keyring", "")
    if spec.kind == "keyring":
        spec = CredentialSpec("keyring", merged["blueprint_app_id"])
    return AgentRef(
        authority_host=merged.get("authority_host", DEFAULT_AUTHORITY_HOST),
        tenant_id=merged["tenant_id"],
        blueprint_app_id=merged["blueprint_app_id"],
        agent_identity_app_id=merged["agent_identity_app_id"],
        credential=spec,
        ca_bundle=merged.get("ca_bundle"),
    )


# ---------------------------------------------------------------- loading


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$AGENTID_HELPER_CONFIG`` or ``user_config_dir("agentid-helper")/config.toml``."""
    env = os.environ if environ is None else environ
    override = env.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and Path(xdg).is_absolute():
        # Same rule as platformdirs, applied to the given environment.
        return Path(xdg) / APP_NAME / "config.toml"
    import platformdirs  # lazy: the daemon only

    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def _env_defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, key in (("AZURE_TENANT_ID", "tenant_id"), ("AZURE_AUTHORITY_HOST", "authority_host")):
        raw = environ.get(var, "").strip()
        if not raw:
            continue
        try:
            out[key] = VALIDATORS[key](raw)
        except ValueError as exc:
            raise ConfigurationError(f"environment variable {var} {reason(exc)}") from None
    return out


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate the config file; a missing file gives an empty config."""
    env = os.environ if environ is None else environ
    file = Path(path).expanduser() if path is not None else default_config_path(env)
    env_defaults = _env_defaults(env)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return Config(path=str(file), env_defaults=env_defaults)
    except IsADirectoryError:
        raise ConfigurationError(f"{file}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigurationError(f"{file}: permission denied") from None
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{file}: invalid TOML: {exc}") from None
    from .config_file import FileLoader  # here: it imports this module

    return FileLoader(file).build(data, env_defaults)
