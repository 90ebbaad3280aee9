"""``agentid-helper completion bash|zsh|profiles``: completion that works after a
``pip install`` into a venv (where no shell looks under ``share/``), loaded
the README's way, with ``--profile <TAB>`` offering the config's profiles.
Real bash (the completion function called with COMP_WORDS/COMP_CWORD) and a
real interactive zsh in a pseudo-terminal (zsh/zpty)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tooling import ROOT

from agentid_client import docgen

BIN = Path(sys.executable).parent  # the venv's scripts, agentid-helper among them
README = ROOT / "README.md"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        'default_profile = "graph-bot"\n'
        '[profiles.graph-bot]\nmode = "AutonomousApp"\n'
        '[profiles.aks]\nmode = "AutonomousApp"\n'
        '[profiles."on-behalf"]\nmode = "OBO"\n'
    )
    return path


def shell_env(config: Path | None, tmp_path: Path) -> dict[str, str]:
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AGENTID_HELPER_NO_AUTOSTART": "1",
        "AGENTID_HELPER_SOCKET": str(tmp_path / "no-daemon.sock"),
    }
    if config is not None:
        env["AGENTID_HELPER_CONFIG"] = str(config)
    return env


def helper(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "agentid-helper"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def readme_line(shell: str) -> str:
    """The line README.md tells ``shell`` users to add to their rc file."""
    for line in README.read_text().splitlines():
        if f"completion {shell})" in line and not line.lstrip().startswith("#"):
            return line.split("#", 1)[0].strip()
    raise AssertionError(f"README.md shows no line loading `completion {shell}`")


@pytest.mark.parametrize(
    ("shell", "relative"), [("bash", docgen.BASH_PATH), ("zsh", docgen.ZSH_PATH)]
)
def test_completion_prints_the_shipped_script(shell: str, relative: str, tmp_path: Path) -> None:
    done = helper("completion", shell, env=shell_env(None, tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / relative).read_text()


def test_profiles_lists_the_config_and_is_quiet_without_one(config: Path, tmp_path: Path) -> None:
    done = helper("completion", "profiles", env=shell_env(config, tmp_path))
    assert (done.returncode, done.stdout, done.stderr) == (0, "aks\ngraph-bot\non-behalf\n", "")
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles\n")
    for path in (tmp_path / "missing.toml", broken):
        done = helper("completion", "profiles", env=shell_env(path, tmp_path))
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_profiles_imports_no_third_party_module(config: Path, tmp_path: Path) -> None:
    probe = (
        "import sys; from agentid_client.cli import main; main(['completion', 'profiles']); "
        "heavy = {'trio', 'msal', 'structlog', 'keyring', 'platformdirs', 'requests'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=shell_env(config, tmp_path),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and done.stderr.strip() == "[]", done.stderr


def bash_complete(load: str, env: dict[str, str], *words: str) -> list[str]:
    """COMPREPLY for ``agentid-helper WORDS...`` once ``load`` (README's line) ran."""
    line = " ".join(f"'{w}'" for w in ("agentid-helper", *words))
    script = (
        f"{load}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
        "_agentid_helper\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_bash_the_readme_way_completes_profiles_and_commands(config: Path, tmp_path: Path) -> None:
    load = readme_line("bash")
    env = shell_env(config, tmp_path)
    assert bash_complete(load, env, "get", "--profile", "") == ["aks", "graph-bot", "on-behalf"]
    assert bash_complete(load, env, "kubeconfig-user", "--profile", "g") == ["graph-bot"]
    assert bash_complete(load, env, "git-credential", "--profile", "on") == ["on-behalf"]
    assert bash_complete(load, env, "compl") == ["completion"]
    assert bash_complete(load, env, "completion", "") == ["--help", "bash", "zsh", "profiles"]
    assert bash_complete(load, env, "get", "--mo") == ["--mode"]
    # no config: nothing to offer, and no error text in the middle of the line
    assert (
        bash_complete(load, shell_env(tmp_path / "none.toml", tmp_path), "get", "--profile", "")
        == []
    )


def zsh_interactive(zdotdir: Path, env: dict[str, str], typed: str, expect: str) -> str:
    """What an interactive zsh (in a pty) shows after ``typed`` + TAB, read until
    ``expect`` appears or 20 s pass."""
    driver = f"""
zmodload zsh/zpty
zpty -b z "ZDOTDIR={zdotdir} TERM=dumb zsh -i"
zpty -w -n z {typed!r}$'\\t'
local all="" chunk
integer deadline=$(( SECONDS + 20 ))
while (( SECONDS < deadline )); do
    if zpty -r -t z chunk; then all+=$chunk; else sleep 0.1; fi
    [[ $all == *{expect!r}* ]] && break
done
print -r -- "$all"
zpty -d z
"""
    done = subprocess.run(
        ["zsh", "-f", "-c", driver],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.replace("\r", "")


def test_zsh_the_readme_way_completes_profiles(config: Path, tmp_path: Path) -> None:
    zdotdir = tmp_path / "zdot"
    zdotdir.mkdir()
    (zdotdir / ".zshrc").write_text(
        f"autoload -Uz compinit; compinit -u -D\n{readme_line('zsh')}\nPROMPT='> '\n"
    )
    env = shell_env(config, tmp_path)
    shown = zsh_interactive(zdotdir, env, "agentid-helper get --profile ", "graph-bot")
    assert re.search(r"aks\s+graph-bot\s+on-behalf", shown), shown
    shown = zsh_interactive(zdotdir, env, "agentid-helper get --profile gr", "graph-bot ")
    assert "--profile graph-bot " in shown, shown  # the one match is inserted
    shown = zsh_interactive(zdotdir, env, "agentid-helper completion ", "profiles")
    assert re.search(r"bash\s+profiles\s+zsh", shown), shown


def test_zsh_from_fpath_still_completes(config: Path, tmp_path: Path) -> None:
    """The shipped file (share/zsh/site-functions) works autoloaded as before."""
    zdotdir = tmp_path / "zdot"
    zdotdir.mkdir()
    (zdotdir / ".zshrc").write_text(
        f"fpath=({(ROOT / docgen.ZSH_PATH).parent} $fpath)\n"
        "autoload -Uz compinit; compinit -u -D\n"
        "PROMPT='> '\n"
    )
    shown = zsh_interactive(
        zdotdir, shell_env(config, tmp_path), "agentid-helper get --profile ", "graph-bot"
    )
    assert re.search(r"aks\s+graph-bot\s+on-behalf", shown), shown


def test_completion_without_a_shell_is_a_usage_error(tmp_path: Path) -> None:
    done = helper("completion", env=shell_env(None, tmp_path))
    assert done.returncode == 2 and "missing shell" in done.stderr
    done = helper("completion", "fish", env=shell_env(None, tmp_path))
    assert done.returncode == 2 and "bash, zsh, profiles" in done.stderr
