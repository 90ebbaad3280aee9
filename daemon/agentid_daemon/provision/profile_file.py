"""``--save-profile`` and ``init``: add profiles to config.toml, keeping the file as it was.

The new profile copies the source profile's table as written (its blueprint,
credential, scope...: what it "inherits"), then names the new agent identity
(and, for an agent user, the ``AutonomousUser`` mode and its UPN). tomlkit
keeps every comment and the layout; the file is replaced atomically (a
temporary file in the same directory, fsync, rename) with its mode kept, and
an existing profile is never overwritten. ``init`` writes whole new profiles
(:func:`add_profiles`), creating the file (0600, in a 0700 directory) when
there is none.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import InlineTable, Table

from agentid_client.private_dir import PrivateDirError, make_private_dir
from agentid_client.redact import quoted

from ..core.errors import ConfigurationError, InvalidRequest

#: The source profile's keys a saved profile does not inherit: they name the
#: source's own agent and user.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NOT_INHERITED = ("agent_identity_app_id", "user_upn", "user_object_id", "mode")


def _copy(value: Any) -> Any:
    """A fresh tomlkit item of ``value`` (inline tables stay inline)."""
    if isinstance(value, InlineTable):
        table = tomlkit.inline_table()
        table.update(value.unwrap())
        return table
    if hasattr(value, "unwrap"):
        return value.unwrap()
    return value


def save_profile(path: str | None, source: str, name: object, overrides: dict[str, str]) -> str:
    """Write ``[profiles.NAME]`` = ``[profiles.SOURCE]`` + ``overrides`` into ``path``."""
    new_name = check_new_name(name, ())
    if not path:
        raise ConfigurationError("the daemon has no config file to save a profile into")
    file = Path(path)
    try:
        mode = file.stat().st_mode & 0o7777
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        doc = tomlkit.parse(text)
    except Exception as exc:  # tomlkit's parse errors have no common base
        raise ConfigurationError(f"{file}: invalid TOML: {exc}") from None
    profiles = doc.get("profiles")
    if not isinstance(profiles, Table) or not isinstance(profiles.get(source), Table):
        raise InvalidRequest(f"profile {quoted(source)} is not a table of {file}")
    if new_name in profiles:
        raise InvalidRequest(
            f"profile {quoted(new_name)} already exists in {file}: choose another "
            "--save-profile name (an existing profile is never overwritten)"
        )
    table = tomlkit.table()
    for key, value in profiles[source].items():
        if key not in _NOT_INHERITED:
            table.add(key, _copy(value))
    for key, value in overrides.items():
        table[key] = value
    profiles.add(new_name, table)
    _replace(file, tomlkit.dumps(doc), mode)
    return new_name


def _replace(file: Path, text: str, mode: int) -> None:
    """Atomically replace ``file`` with ``text`` (same directory, mode kept)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(file.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_new_name(name: object, existing: Iterable[str]) -> str:
    """``name`` if it can be a new profile (checked before anything is created)."""
    if not isinstance(name, str) or not _NAME.match(name):
        shown = name[:80] if isinstance(name, str) else repr(name)[:80]
        raise InvalidRequest(
            f"save_profile {quoted(shown)} must be 1-64 letters, digits, '_' or '-'"
        )
    if name in set(existing):
        raise InvalidRequest(
            f"profile {quoted(name)} already exists: choose another --save-profile name "
            "(an existing profile is never overwritten)"
        )
    return name


def delete_profiles_of(path: str | None, agent_app_id: str) -> list[str]:
    """Remove the ``[profiles.*]`` tables naming ``agent_identity_app_id`` (the
    agent just deleted); return their names. Comments elsewhere are kept."""
    if not path:
        return []
    file = Path(path)
    try:
        mode = file.stat().st_mode & 0o7777
        doc = tomlkit.parse(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot read: {exc.strerror}") from None
    profiles = doc.get("profiles")
    if not isinstance(profiles, Table):
        return []
    names = [
        str(n)
        for n, t in profiles.items()
        if isinstance(t, Table)
        and str(t.get("agent_identity_app_id", "")).lower() == agent_app_id.lower()
    ]
    if not names:
        return []
    for name in names:
        del profiles[name]
    if doc.get("default_profile") in names:
        del doc["default_profile"]
    _replace(file, tomlkit.dumps(doc), mode)
    return names


def _value(value: Any) -> Any:
    """A TOML value of ``value``; a dict becomes an inline table (credentials)."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        table.update(value)
        return table
    return value


def prepare_new_file(path: Path) -> None:
    """Make sure a new file can be written at ``path``: its directory is created
    (0700, as the config directory) when missing; an existing directory is left
    as it is (the daemon's trust rules judge the file there)."""
    if not path.parent.exists():
        try:
            make_private_dir(str(path.parent))
        except PrivateDirError as exc:
            raise ConfigurationError(f"cannot create {path}: {exc}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"cannot create {path}: {path.parent} is not writable by you")


def check_writable(path: Path) -> None:
    """Before ``init`` creates anything: the config file at ``path`` can be written
    (replaced atomically: its directory must be writable too)."""
    prepare_new_file(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigurationError(f"cannot write {path}: not writable by you")


def add_profiles(path: Path, profiles: dict[str, dict[str, Any]], default: str) -> bool:
    """Add ``profiles`` (name -> keys) to the config file at ``path``, creating it
    when missing; ``default_profile = default`` unless the file names one.
    Returns whether ``default`` became the default profile."""
    try:
        mode = path.stat().st_mode & 0o7777
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        prepare_new_file(path)
        mode = 0o600
        doc = tomlkit.document()
        doc.add(
            tomlkit.comment("agentid-helper configuration, first written by `agentid-helper init`")
        )
        doc.add(tomlkit.comment("keys: docs/configuration.md, `agentid-helper --help`"))
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None
    except Exception as exc:  # tomlkit's parse errors have no common base
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from None
    made_default = "default_profile" not in doc
    if made_default:
        doc["default_profile"] = default
    table = doc.get("profiles")
    if table is None:
        table = tomlkit.table(is_super_table=True)
        doc.add("profiles", table)
    if not isinstance(table, Table):
        raise ConfigurationError(f"{path}: profiles is not a table")
    for name, keys in profiles.items():
        if name in table:
            raise InvalidRequest(
                f"profile {quoted(name)} already exists in {path} (an existing profile is "
                "never overwritten)"
            )
        new = tomlkit.table()
        for key, value in keys.items():
            new.add(key, _value(value))
        table.add(name, new)
    _replace(path, tomlkit.dumps(doc), mode)
    return made_default
