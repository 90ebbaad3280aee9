"""Validation of a parsed config file against the schema (:mod:`config_schema`).

Every value is checked and canonicalised here, once, so that
:meth:`Config.resolve` only checks request fields and their combination.
Errors name the file, the table and the key, and suggest the closest known
key. Paths (``ca_bundle``, credential files) expand ``~`` and ``$VARS`` and
are relative to the config file. Nothing here imports :mod:`config`: the
result is a :class:`FileContents` that :func:`config.load_config` wraps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentid_client.contract import git_key

from ..core.errors import ConfigurationError
from ..core.models import USER_FIELDS
from .schema import Where, key, keys, top_keys
from .values import DaemonSettings, FileContents, Profile, did_you_mean, reason


class FileLoader:
    """Validates a parsed TOML document; errors name the file, table and key."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, where: str, name: str | None, why: str) -> ConfigurationError:
        loc = f"{where} key {name!r}" if name else where
        return ConfigurationError(f"{self.file}: {loc}: {why}")

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, None, f"must be a table, not {type(value).__name__}")
        return value

    def check_keys(self, data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
        for name in data:
            if name not in known:
                raise self.error(where, name, "unknown key" + did_you_mean(name, known))

    def values(self, body: dict[str, Any], kind: Where, where: str) -> dict[str, Any]:
        """Check a table's keys and validate each value with the schema."""
        self.check_keys(body, keys(kind), where)
        out: dict[str, Any] = {}
        for name, value in body.items():
            try:
                out[name] = key(kind, name).validate(value, self.file.parent)
            except ValueError as exc:
                raise self.error(where, name, reason(exc)) from None
        return out

    def build(self, data: dict[str, Any]) -> FileContents:
        self.check_keys(data, top_keys(), "top level")
        top = self.values({k: v for k, v in data.items() if k in keys("top")}, "top", "top level")
        daemon = DaemonSettings(
            **self.values(self.table(data.get("daemon", {}), "[daemon]"), "daemon", "[daemon]")
        )
        defaults_body = self.table(data.get("defaults", {}), "[defaults]")
        defaults = self.profile(defaults_body, "defaults", "[defaults]")
        profiles: dict[str, Profile] = {}
        for name, body in self.table(data.get("profiles", {}), "[profiles]").items():
            if not name.strip():
                raise self.error("[profiles]", name, "a profile name must not be empty")
            where = f"[profiles.{name}]"
            profiles[name] = self.profile(self.table(body, where), "profile", where)

        git: dict[str, str] = {}
        for host, body in self.table(data.get("git", {}), "[git]").items():
            where = f'[git."{host}"]'
            entry = self.values(self.table(body, where), "git", where)
            if "profile" not in entry:
                raise self.error(where, "profile", "must name a profile")
            self.known_profile(entry["profile"], profiles, where, "profile")
            git[git_key(host)] = entry["profile"]

        default_profile = top.get("default_profile")
        if default_profile is not None:
            self.known_profile(default_profile, profiles, "top level", "default_profile")
        self.check_sidecar(daemon, profiles)
        return FileContents(default_profile, daemon, defaults, profiles, git)

    def check_sidecar(self, daemon: DaemonSettings, profiles: dict[str, Profile]) -> None:
        """``managed_identity_listen`` and ``_header_file`` go together; ``_profile`` exists."""
        listen, header_file = daemon.managed_identity_listen, daemon.managed_identity_header_file
        if (listen is None) != (header_file is None):
            missing = "managed_identity_header_file" if listen else "managed_identity_listen"
            raise self.error("[daemon]", missing, "is needed too: the sidecar endpoint takes both")
        profile = daemon.managed_identity_profile
        if profile is not None:
            if listen is None:
                raise self.error(
                    "[daemon]",
                    "managed_identity_profile",
                    "needs managed_identity_listen and managed_identity_header_file",
                )
            self.known_profile(profile, profiles, "[daemon]", "managed_identity_profile")

    def profile(self, body: dict[str, Any], kind: Where, where: str) -> Profile:
        out = self.values(body, kind, where)
        if all(k in out for k in USER_FIELDS):
            raise self.error(where, "user_object_id", "set user_upn or user_object_id, not both")
        return Profile(**out)

    def known_profile(
        self, name: str, profiles: dict[str, Profile], where: str, field: str
    ) -> None:
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise self.error(
                where, field, f"no profile {name!r}{did_you_mean(name, profiles)}; known: {known}"
            )
