"""Validation of a parsed config file (see :mod:`config` for the semantics).

Every value is checked and canonicalised here, once, so that
:meth:`Config.resolve` only checks request fields and their combination.
Paths (``ca_bundle``, credential files) expand ``~`` and ``$VARS`` (e.g.
systemd's ``$CREDENTIALS_DIRECTORY``) and are relative to the config file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentid_client.contract import git_key

from . import fields as F
from .config import (
    CREDENTIAL_KINDS,
    DAEMON_KEYS,
    GIT_KEYS,
    PROFILE_KEYS,
    TOP_KEYS,
    VALIDATORS,
    Config,
    DaemonSettings,
    did_you_mean,
    reason,
)
from .errors import ConfigurationError, InvalidRequest
from .models import CredentialSpec


class FileLoader:
    """Validates a parsed TOML document; errors name the file, table and key."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, where: str, key: str | None, reason: str) -> ConfigurationError:
        loc = f"{where} key {key!r}" if key else where
        return ConfigurationError(f"{self.file}: {loc}: {reason}")

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, None, f"must be a table, not {type(value).__name__}")
        return value

    def check_keys(self, data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in known:
                raise self.error(where, key, "unknown key" + did_you_mean(key, known))

    def build(self, data: dict[str, Any], env_defaults: dict[str, Any]) -> Config:
        self.check_keys(data, TOP_KEYS, "top level")
        daemon_raw = self.table(data.get("daemon", {}), "[daemon]")
        self.check_keys(daemon_raw, DAEMON_KEYS, "[daemon]")
        daemon = DaemonSettings()
        if "idle_timeout_s" in daemon_raw:
            try:
                daemon = DaemonSettings(F.positive_number(daemon_raw["idle_timeout_s"]))
            except ValueError as exc:
                raise self.error("[daemon]", "idle_timeout_s", str(exc)) from None

        defaults = self.section(self.table(data.get("defaults", {}), "[defaults]"), "[defaults]")
        profiles: dict[str, dict[str, Any]] = {}
        for name, body in self.table(data.get("profiles", {}), "[profiles]").items():
            where = f"[profiles.{name}]"
            if not name.strip():
                raise self.error("[profiles]", name, "a profile name must not be empty")
            profiles[name] = self.section(self.table(body, where), where)

        git: dict[str, dict[str, Any]] = {}
        for host, body in self.table(data.get("git", {}), "[git]").items():
            where = f'[git."{host}"]'
            entry = self.table(body, where)
            self.check_keys(entry, GIT_KEYS, where)
            prof = entry.get("profile")
            if not isinstance(prof, str) or not prof:
                raise self.error(where, "profile", "must name a profile")
            if prof not in profiles:
                raise self.error(where, "profile", self.unknown_profile(prof, profiles))
            git[git_key(host)] = {"profile": prof}

        default_profile = data.get("default_profile")
        if default_profile is not None:
            if not isinstance(default_profile, str) or not default_profile:
                raise self.error("top level", "default_profile", "must be a profile name")
            if default_profile not in profiles:
                raise self.error(
                    "top level", "default_profile", self.unknown_profile(default_profile, profiles)
                )
        return Config(
            path=str(self.file),
            default_profile=default_profile,
            daemon=daemon,
            defaults=defaults,
            profiles=profiles,
            git=git,
            env_defaults=env_defaults,
        )

    @staticmethod
    def unknown_profile(name: str, profiles: dict[str, Any]) -> str:
        known = ", ".join(sorted(profiles)) or "none"
        return f"no profile {name!r}{did_you_mean(name, list(profiles))}; known: {known}"

    def section(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        self.check_keys(body, PROFILE_KEYS, where)
        out: dict[str, Any] = {}
        for key, value in body.items():
            try:
                if key == "blueprint_credential":
                    out[key] = self.credential(value)
                elif key == "ca_bundle":
                    out[key] = self.path(value)
                else:
                    out[key] = VALIDATORS[key](value)
            except ValueError as exc:
                raise self.error(where, key, reason(exc)) from None
            except InvalidRequest as exc:  # from normalise_scopes
                raise self.error(where, key, exc.description) from None
        if "user_upn" in out and "user_object_id" in out:
            raise self.error(where, "user_object_id", "set user_upn or user_object_id, not both")
        return out

    def path(self, value: Any, *, defer_unset: bool = False) -> str:
        """Expand ``~`` and ``$VARS`` (e.g. ``$CREDENTIALS_DIRECTORY``); relative to the file.

        With ``defer_unset`` (credential paths) a path naming an unset variable
        is kept as written: the credential reader expands it when the profile
        is used, so one systemd-only profile does not break the whole file.
        """
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty path string")
        expanded = Path(os.path.expandvars(os.path.expanduser(value.strip())))
        if "$" in str(expanded):
            if defer_unset:
                return value.strip()
            raise ValueError(f"{value!r} names an unset environment variable")
        if not expanded.is_absolute():
            expanded = self.file.parent / expanded
        return os.path.normpath(expanded)

    def credential(self, value: Any) -> CredentialSpec:
        if isinstance(value, str):
            if value.strip().lower() == "keyring":
                return CredentialSpec("keyring", "")
            raise ValueError(
                f'{value!r} is not a credential source: use "keyring" or a table such as '
                '{ secret_file = "/path" }'
            )
        if not isinstance(value, dict):
            raise ValueError(f"must be \"keyring\" or a table, not {type(value).__name__}")
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
        return CredentialSpec(kind, self.path(location, defer_unset=True))
