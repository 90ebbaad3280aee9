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

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentid_client.contract import LIST_FIELDS, TOKEN_OPTIONS
from agentid_client.redact import quoted

from ..core.errors import ConfigurationError, InvalidRequest, UnknownProfile
from ..core.models import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_SCOPE,
    MODE_ONLY_FIELDS,
    USER_FIELDS,
    AgentRef,
    CredentialSpec,
    Mode,
    TokenRequest,
    field_not_for_mode,
)
from ..core.secret_files import MAX_CONFIG_BYTES, FileMissing, read_trusted_file
from . import schema
from .file import FileLoader
from .resolve_memo import ResolveMemo, memo_key
from .scopes import normalise_scopes, validate_for_mode
from .sidecar_env import PROFILE_NAME as SIDECAR_PROFILE
from .sidecar_env import SidecarEnv, load_sidecar_env
from .values import DaemonSettings, Profile, did_you_mean, reason

APP_NAME = "agentid-helper"
CONFIG_ENV = "AGENTID_HELPER_CONFIG"

# Derived from the schema (config_schema.SCHEMA), never listed here.
PROFILE_KEYS = schema.keys("profile")
REQUEST_KEYS = schema.keys("request")
DAEMON_KEYS = schema.keys("daemon")
# Request fields that may be a JSON array of strings (the others are strings).
LIST_REQUEST_KEYS = LIST_FIELDS
# Request options handled by the broker, tolerated (and ignored) by resolve().
REQUEST_OPTION_KEYS = TOKEN_OPTIONS

__all__ = [
    "DAEMON_KEYS",
    "PROFILE_KEYS",
    "REQUEST_KEYS",
    "Config",
    "DaemonSettings",
    "Profile",
    "default_config_path",
    "load_config",
]


@dataclass(frozen=True)
class Config:
    """A loaded, validated configuration.

    ``defaults``, ``profiles`` and ``env_defaults`` are :class:`Profile` values
    holding canonical values: scopes are normalised tuples, modes are
    :class:`Mode`, ``blueprint_credential`` is a :class:`CredentialSpec` (a
    keyring spec's location is filled in from the blueprint app id at resolve
    time). ``git`` maps ``contract.git_key(host)`` to a profile name.
    """

    path: str | None = None
    default_profile: str | None = None
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    defaults: Profile = field(default_factory=Profile)
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    git: Mapping[str, str] = field(default_factory=dict)
    env_defaults: Profile = field(default_factory=Profile)
    # The Agent ID sidecar's own variables (AzureAd__*, DownstreamApis__*, Sidecar__*);
    # their profile is already in ``profiles`` as sidecar_env.PROFILE_NAME.
    sidecar: SidecarEnv = field(default_factory=SidecarEnv)
    # Not part of the value: a cache of resolve() results for this object.
    _memo: ResolveMemo = field(default_factory=ResolveMemo, init=False, repr=False, compare=False)

    def profile_names(self) -> list[str]:
        return sorted(self.profiles)

    def layered(self, profile: Profile) -> dict[str, Any]:
        """Environment defaults < ``[defaults]`` < ``profile``: the keys that are set."""
        return {**self.env_defaults.values(), **self.defaults.values(), **profile.values()}

    def resolve_selection(self, fields: Mapping[str, Any]) -> TokenRequest:
        """Like :meth:`resolve`, for dropping tokens: an OBO selection needs no
        user token (it then names that key's tokens of every user)."""
        if not isinstance(fields, Mapping):
            raise InvalidRequest("the request body must be a JSON object")
        return self._resolve(fields, need_user_token=False)

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

    @property
    def remembered(self) -> int:
        """How many resolutions this Config remembers (at most ``RESOLVE_MEMO_SIZE``)."""
        return len(self._memo)

    def forget_resolved(self) -> None:
        """Drop remembered resolutions (after a reload: they may hold user tokens)."""
        self._memo.clear()

    def _resolve(self, fields: Mapping[str, Any], *, need_user_token: bool = True) -> TokenRequest:
        request: dict[str, Any] = {}
        for key, value in fields.items():
            if key in REQUEST_OPTION_KEYS or value is None:
                continue
            request[key] = schema.check_request(str(key), value)

        name = request.pop("profile", None) or self.default_profile
        profile = Profile()
        if name is not None:
            if name not in self.profiles:
                known = ", ".join(self.profile_names()) or "none configured"
                raise UnknownProfile(
                    f"unknown profile {quoted(name)}{did_you_mean(name, self.profile_names())}; "
                    f"known profiles: {known}"
                )
            profile = self.profiles[name]

        lower = self.layered(profile)
        if any(k in request for k in USER_FIELDS):
            # The request names its user: a profile's other user field must not
            # collide with it (UPN xor object id).
            for key in USER_FIELDS:
                lower.pop(key, None)
        merged = {**lower, **request}
        if "client_capabilities" in request and "client_capabilities" in lower:
            # Capabilities are declarations: a request (azure-core's enable_cae)
            # adds to the profile's, it cannot take one away.
            merged["client_capabilities"] = tuple(
                sorted({*lower["client_capabilities"], *request["client_capabilities"]})
            )
        return _build_request(merged, request, name, need_user_token=need_user_token)

    @classmethod
    def empty(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        return _with_sidecar(cls(env_defaults=_env_defaults(env)), load_sidecar_env(env))


def _with_sidecar(config: Config, sidecar: SidecarEnv) -> Config:
    """*config* with the sidecar-style variables' profile added (the default when
    the file names none): the ``AzureAd__*`` variables are an alternative to
    ``config.toml``, not a second source for the same profile."""
    if not sidecar.configured:
        return config
    profiles = dict(config.profiles)
    default = config.default_profile
    if sidecar.profile is not None:
        if SIDECAR_PROFILE in profiles:
            raise ConfigurationError(
                f"{config.path or 'the config file'}: profile {SIDECAR_PROFILE!r} is also "
                "made by the AzureAd__* environment variables; rename one of them"
            )
        profiles[SIDECAR_PROFILE] = sidecar.profile
        default = default or SIDECAR_PROFILE
    return Config(
        path=config.path,
        default_profile=default,
        daemon=config.daemon,
        defaults=config.defaults,
        profiles=profiles,
        git=config.git,
        env_defaults=config.env_defaults,
        sidecar=sidecar,
    )


def _build_request(
    merged: dict[str, Any],
    request: dict[str, Any],
    name: str | None,
    *,
    need_user_token: bool = True,
) -> TokenRequest:
    where = f" (profile {name!r})" if name else ""
    _require_ids(merged, where)
    mode: Mode = merged.get("mode", Mode.AUTONOMOUS_APP)
    scopes: tuple[str, ...] = merged.get("scope") or normalise_scopes(DEFAULT_SCOPE)
    validate_for_mode(scopes, mode)

    # A field the request names for another mode is a mistake; a profile's
    # (say user_upn under [defaults]) simply does not apply to this mode.
    wrong = field_not_for_mode(mode, request)
    if wrong is not None:
        raise InvalidRequest(wrong)
    taken = {k: merged.get(k) for k in MODE_ONLY_FIELDS.get(mode, ())}
    built = TokenRequest(
        agent=_agent_from(merged),
        mode=mode,
        scopes=scopes,
        profile=name,
        user_upn=taken.get("user_upn"),
        user_object_id=taken.get("user_object_id"),
        user_token=taken.get("user_token"),
        obo_session=taken.get("obo_session"),
    )
    problem = built.mode_problem(need_user_token=need_user_token)
    if problem is not None:
        raise InvalidRequest(problem + where)
    return built


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
        client_capabilities=merged.get("client_capabilities", ()),
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


def _env_defaults(environ: Mapping[str, str]) -> Profile:
    out: dict[str, Any] = {}
    for key in schema.env_defaults():
        raw = environ.get(key.env, "").strip()
        if not raw:
            continue
        try:
            out[key.name] = key.validate(raw, None)
        except ValueError as exc:
            raise ConfigurationError(f"environment variable {key.env} {reason(exc)}") from None
    return Profile(**out)


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate the config file; a missing file gives an empty config."""
    env = os.environ if environ is None else environ
    file = Path(path).expanduser() if path is not None else default_config_path(env)
    env_defaults = _env_defaults(env)
    sidecar = load_sidecar_env(env)
    try:
        # Only a file no other user can change (file_trust): its authority_host
        # and ca_bundle decide where the blueprint's credential is sent.
        raw = read_trusted_file(str(file), "config file", secret=False, max_bytes=MAX_CONFIG_BYTES)
    except FileMissing:
        return _with_sidecar(Config(path=str(file), env_defaults=env_defaults), sidecar)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{file}: invalid TOML: {exc}") from None
    contents = FileLoader(file).build(data)
    config = Config(
        path=str(file),
        default_profile=contents.default_profile,
        daemon=contents.daemon,
        defaults=contents.defaults,
        profiles=contents.profiles,
        git=contents.git,
        env_defaults=env_defaults,
    )
    return _with_sidecar(config, sidecar)
