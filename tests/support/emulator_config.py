"""The suite's one writer of daemon configs for the local emulator.

:func:`emulator_config` builds the config as a dict (profiles ``app``,
``user`` and ``obo`` on the emulator's demo agent unless told otherwise),
:func:`toml_dumps` writes it, :func:`write_emulator_config` does both.
Integration tests build their own profiles with :func:`emulator_profile`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GRAPH_RESOURCE = "https://graph.microsoft.com"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def toml_dumps(data: Mapping[str, Any]) -> str:
    """Just enough TOML for config.toml: scalars, inline tables, two table levels.

    A top-level mapping whose values are all mappings (``profiles``, ``git``)
    becomes ``[name."sub"]`` sections; other mappings become ``[name]``.
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            if value and all(isinstance(v, Mapping) for v in value.values()):
                tables += [(f"{_toml_key(key)}.{_toml_key(k)}", v) for k, v in value.items()]
            else:
                tables.append((_toml_key(key), value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for header, table in tables:
        lines += ["", f"[{header}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def emulator_profile(
    info: Mapping[str, Any], *, resource: str, credential: str | Mapping[str, str], **overrides: Any
) -> dict[str, Any]:
    """An AutonomousApp profile for the emulator's demo agent and *resource*."""
    profile: dict[str, Any] = {
        "blueprint_app_id": info["blueprint_app_id"],
        "agent_identity_app_id": info["agent_identity_app_id"],
        "scope": f"{resource}/.default",
        "mode": "AutonomousApp",
        "blueprint_credential": credential,
    }
    profile.update(overrides)
    return profile


def secret_file(emu: Any, path: Path, secret: str | None = None) -> Path:
    """A 0600 file holding the emulator's blueprint secret (or *secret*)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(emu.blueprint_secret if secret is None else secret)
    return path


def emulator_config(
    info: Mapping[str, Any],
    credential: str | Mapping[str, str],
    *,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    default_profile: str | None = "app",
    daemon: Mapping[str, Any] | None = None,
    git: Mapping[str, str] | None = None,
    ca_bundle: str | None = None,
) -> dict[str, Any]:
    """A config on the emulator (*info*: its ready file): ``[defaults]`` names
    its tenant, authority and CA.

    Without *profiles*: ``app`` (AutonomousApp), ``user`` (AutonomousUser, the
    demo agent user) and ``obo`` (OBO) for Microsoft Graph. *git* maps hosts to
    profiles.
    """
    if profiles is None:
        profiles = {
            "app": emulator_profile(info, resource=GRAPH_RESOURCE, credential=credential),
            "user": emulator_profile(
                info,
                resource=GRAPH_RESOURCE,
                credential=credential,
                mode="AutonomousUser",
                user_upn=info["agent_user_upn"],
            ),
            "obo": emulator_profile(
                info, resource=GRAPH_RESOURCE, credential=credential, mode="OBO"
            ),
        }
    config: dict[str, Any] = {}
    if default_profile is not None:
        config["default_profile"] = default_profile
    if daemon:
        config["daemon"] = dict(daemon)
    config["defaults"] = {
        "tenant_id": info["tenant_id"],
        "authority_host": info["authority_host"],
        "ca_bundle": ca_bundle or info["ca_bundle"],
    }
    config["profiles"] = {name: dict(body) for name, body in profiles.items()}
    if git:
        config["git"] = {host: {"profile": profile} for host, profile in git.items()}
    return config


def write_emulator_config(
    path: Path, info: Mapping[str, Any], credential: str | Mapping[str, str], **options: Any
) -> Path:
    """:func:`emulator_config` written to *path* (mode 0600)."""
    path.write_text(toml_dumps(emulator_config(info, credential, **options)))
    path.chmod(0o600)
    return path
