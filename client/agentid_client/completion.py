"""``agentid-helper completion bash|zsh|profiles``: the shell completion scripts,
and the profile names they complete.

``bash`` and ``zsh`` print the script :mod:`docgen` renders from the command
table, the same text as the files under ``share/`` (a ``pip install`` into a
venv or ``pipx install`` puts those where no shell looks, so the README has
users load this command's output instead). ``profiles`` prints the config's
profile names, one a line: what the scripts call for ``--profile <TAB>``.
It reads config.toml itself (stdlib ``tomllib``; no daemon) and prints
nothing, successfully, when the config is missing or broken: a completion
never shows an error in the middle of a command line.
"""

from __future__ import annotations

from typing import TextIO

from . import paths

PROFILES = "profiles"


def configured_profiles(config_file: str | None = None) -> list[str] | None:
    """The ``[profiles.NAME]`` names of config.toml, sorted; None when the file
    cannot be read or parsed (the daemon's loader says why; this is a cold path's
    quick look, no daemon)."""
    import tomllib

    path = config_file or paths.config_path()
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    profiles = config.get("profiles", {})
    return sorted(profiles) if isinstance(profiles, dict) else None


def profile_names(config_file: str | None = None) -> list[str]:
    """The profile names to complete, sorted; [] when the config is unreadable."""
    # A name with whitespace could not be completed as one word.
    names = configured_profiles(config_file) or []
    return [name for name in names if name and not any(c.isspace() for c in name)]


def script(shell: str) -> str:
    """The completion script for ``shell`` (bash or zsh)."""
    from . import docgen

    return docgen.render_bash() if shell == "bash" else docgen.render_zsh()


def run_completion(what: str, stdout: TextIO) -> int:
    if what == PROFILES:
        names = profile_names()
        stdout.write("".join(f"{name}\n" for name in names))
    else:
        stdout.write(script(what))
    stdout.flush()
    return 0
