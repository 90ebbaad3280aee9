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


def profile_names(config_file: str | None = None) -> list[str]:
    """The ``[profiles.NAME]`` names of config.toml, sorted; [] when unreadable."""
    import tomllib

    path = config_file or paths.config_path()
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    profiles = config.get("profiles")
    if not isinstance(profiles, dict):
        return []
    # A name with whitespace could not be completed as one word.
    return sorted(name for name in profiles if name and not any(c.isspace() for c in name))


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
