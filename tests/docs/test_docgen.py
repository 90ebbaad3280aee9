"""The man page and the shell completions follow the command table, and work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tooling import EMULATOR, ROOT, build_wheel

from agentid_client import docgen
from agentid_client.commands import COMMANDS, MODES


@pytest.mark.parametrize("relative", sorted(docgen.RENDERERS))
def test_committed_file_matches_the_command_table(relative: str) -> None:
    committed = (ROOT / relative).read_text()
    assert committed == docgen.RENDERERS[relative](), (
        f"{relative} is stale: run .venv/bin/python scripts/gen_docs.py"
    )


@pytest.mark.parametrize("relative", sorted(docgen.RENDERERS))
def test_every_command_and_flag_is_in(relative: str) -> None:
    text = (ROOT / relative).read_text().replace("\\-", "-")
    missing = [
        f"{cmd.name} {flag}"
        for cmd in COMMANDS.values()
        for flag in [cmd.name, *cmd.opts]
        if flag not in text
    ]
    assert missing == []


def test_man_page_renders_without_warnings() -> None:
    done = subprocess.run(
        ["man", "--warnings", "-l", str(ROOT / docgen.MAN_PATH)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "EXIT STATUS" in done.stdout


def bash_complete(*words: str) -> list[str]:
    """What bash completes for ``agentid-helper WORDS...`` (the last word is the one typed)."""
    line = " ".join(f"'{w}'" for w in ("agentid-helper", *words))
    script = (
        f"source {ROOT / docgen.BASH_PATH}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
        "_agentid_helper\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_bash_completes_commands() -> None:
    assert bash_complete("g") == ["get", "git-credential"]
    assert set(bash_complete("")) >= set(COMMANDS)


def test_bash_completes_options_and_choices() -> None:
    assert bash_complete("get", "--mo") == ["--mode"]
    assert bash_complete("get", "--mode", "") == list(MODES)
    assert bash_complete("secret", "") == ["--blueprint-app-id", "--help", "set", "delete"]
    assert bash_complete("systemd", "un") == ["uninstall"]


def test_bash_completes_a_file_for_the_user_token(tmp_path: Path) -> None:
    (tmp_path / "user.jwt").write_text("x")
    prefix = str(tmp_path / "us")
    assert bash_complete("get", "--user-token-file", prefix) == [str(tmp_path / "user.jwt")]


def test_bash_completes_the_command_after_exec_dashdash() -> None:
    assert "bash" in bash_complete("exec", "--", "bas")


def test_zsh_completion_parses_and_registers() -> None:
    site = ROOT / docgen.ZSH_PATH
    syntax = subprocess.run(["zsh", "-n", str(site)], capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, syntax.stderr
    script = (
        f"fpath=({site.parent} $fpath); autoload -Uz compinit; compinit -u -D; "
        "print -r -- $_comps[agentid-helper]"
    )
    done = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "_agentid-helper"


def test_the_wheel_ships_units_man_page_and_completions(tmp_path: Path) -> None:
    """Package data and shared data reach an installed wheel (built offline)."""
    import zipfile

    wheel = build_wheel(tmp_path)
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    repo = ROOT
    for unit in ("agentid-helper.service", "agentid-helper.socket"):
        # The wheel's copy is systemd/'s file, byte for byte (one source).
        shipped = archive.read(f"agentid_client/units/{unit}")
        assert shipped == (repo / "systemd" / unit).read_bytes()
    for relative in docgen.RENDERERS:
        assert any(name.endswith(".data/data/" + relative) for name in names), relative


def test_the_emulator_is_a_distribution_of_its_own(tmp_path: Path) -> None:
    """The main wheel (what the sidecar image installs) holds no emulator: an
    unauthenticated token-minting server. The emulator's own wheel has it, and
    its console script."""
    import zipfile

    main = zipfile.ZipFile(build_wheel(tmp_path / "main"))
    main_names = main.namelist()
    assert not [n for n in main_names if n.startswith("agentid_emulator")], main_names
    (entry_points,) = [n for n in main_names if n.endswith(".dist-info/entry_points.txt")]
    assert "agentid_emulator" not in main.read(entry_points).decode()
    emulator = zipfile.ZipFile(build_wheel(tmp_path / "emulator", EMULATOR))
    names = emulator.namelist()
    assert "agentid_emulator/cli.py" in names
    assert not [n for n in names if n.startswith(("agentid_daemon", "agentid_client"))]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = emulator.read(entry_points).decode()
    assert "agentid-helper-emulator = agentid_emulator.cli:main" in scripts
