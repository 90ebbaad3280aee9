"""Review fixes: ``status``'s SCOPE cell is the key ``flush --scope`` selects
(with the granted scope beside it when it differs), the idle-exit line does
not read like a countdown, ``--profile=<TAB>`` completes profiles,
``kubeconfig-user --merge`` names the user's file and checks its arguments,
and doctor's small inaccuracies."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_client_doctor
from client_fakes import FakeDaemon
from client_stack import Env, client_stack

from agentid_client.doctor import run_doctor
from agentid_client.statusview import render_status


@pytest.fixture
def stack(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    with client_stack(emulator, tmp_path) as env:
        yield env


def _status_body(**entry: Any) -> dict[str, Any]:
    base = {"profile": "agent-user", "kind": "resource", "mode": "AutonomousUser"}
    return {"entries": [{**base, **entry}]}


def test_scope_cell_shows_the_requested_scope_and_the_granted_one_beside_it() -> None:
    body = _status_body(scopes=["https://graph.microsoft.com/.default"], granted_scope="User.Read")
    row = render_status(body, now=0).splitlines()[1]
    assert "https://graph.microsoft.com/.default (granted: User.Read)" in row


def test_scope_cell_shows_one_scope_when_granted_as_requested() -> None:
    scope = "https://graph.microsoft.com/.default"
    row = render_status(_status_body(scopes=[scope], granted_scope=scope), now=0).splitlines()[1]
    assert scope in row and "granted" not in row


def test_the_scope_in_status_is_what_flush_scope_drops(stack: Env) -> None:
    # the profile names no scope: the key is https://graph.microsoft.com/.default,
    # while the emulator (like Entra) grants the delegated token User.Read
    done = stack.run("get", "--profile", "user", "--format", "json")
    assert done.returncode == 0, done.stderr
    granted = json.loads(done.stdout)["scope"]
    table = stack.run("status").stdout
    header, row = _header_and_row(table, "user ")
    cell = row[header.index("SCOPE") :].split()[0]
    assert granted != cell and granted in row, table  # the granted scope stays visible
    flushed = stack.run("flush", "--profile", "user", "--scope", cell)
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.startswith("flushed 1 cached token"), flushed.stdout


def _header_and_row(table: str, prefix: str) -> tuple[str, str]:
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("PROFILE "))
    return header, next(line for line in lines if line.startswith(prefix))


def test_idle_exit_line_does_not_read_like_a_countdown() -> None:
    body = {"daemon": {"pid": 1, "exit_when_idle_s": 900}, "entries": []}
    out = render_status(body, now=0)
    assert "idle exit: after 15m00s with nothing cached ([daemon] exit_when_idle_s)" in out
    assert "exits after" not in out


def test_doctor_names_the_requested_scope_and_the_granted_one(stack: Env) -> None:
    out = stack.run("doctor").stdout
    line = next(line for line in out.splitlines() if "profile user:" in line)
    assert "scope https://graph.microsoft.com/.default (granted: User.Read)" in line, out


# ---- kubeconfig-user --merge -------------------------------------------------

KUBE_CONFIG_TOML = """\
[profiles.graph-bot]
tenant_id = "7a3e1c52-4b1d-4e0a-9c61-2f3b5d7e9a10"

[profiles.kube]
tenant_id = "7a3e1c52-4b1d-4e0a-9c61-2f3b5d7e9a10"
"""


def _helper(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text(KUBE_CONFIG_TOML)
    env = {
        **os.environ,
        "AGENTID_HELPER_CONFIG": str(config),
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "agentid_client", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_merge_names_the_users_file_when_kubectl_cannot_read_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("users: [unclosed\n  - : :\n")
    done = _helper(tmp_path, "kubeconfig-user", "--profile", "kube", f"--merge={bad}")
    assert done.returncode == 5, done
    assert str(bad) in done.stderr and ".agentid-helper." not in done.stderr, done.stderr
    assert bad.read_text() == "users: [unclosed\n  - : :\n"


def test_merge_refuses_a_missing_directory_it_was_not_told_to_create(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x.yaml"
    done = _helper(tmp_path, "kubeconfig-user", "--profile", "kube", f"--merge={target}")
    assert done.returncode == 5, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "does not exist" in done.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_merge_creates_kubectls_own_directory(tmp_path: Path) -> None:
    done = _helper(tmp_path, "kubeconfig-user", "--profile", "kube", "--merge")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / ".kube" / "config").is_file()


def test_merge_refuses_an_unknown_profile_naming_the_known_ones(tmp_path: Path) -> None:
    done = _helper(tmp_path, "kubeconfig-user", "--profile", "nope", "--merge")
    assert done.returncode == 2, done
    assert "nope" in done.stderr and "graph-bot, kube" in done.stderr, done.stderr
    assert not (tmp_path / "home" / ".kube").exists()


def test_merge_refuses_a_token_looking_profile_without_echoing_it(tmp_path: Path) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "a" * 80
    (tmp_path / "config.toml").write_text("this is [not toml")  # unreadable: shape only
    done = _helper(tmp_path, "kubeconfig-user", "--profile", token, "--merge")
    assert done.returncode == 2, done
    assert token not in done.stderr and token[:20] not in done.stderr, done.stderr
    assert not (tmp_path / "home" / ".kube").exists()


def test_merge_accepts_any_name_when_the_config_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("this is [not toml")
    done = _helper(tmp_path, "kubeconfig-user", "--profile", "later", "--merge")
    assert done.returncode == 0, done.stderr


def test_the_profile_name_rule_is_the_config_loaders(tmp_path: Path) -> None:
    from agentid_client.contract import is_profile_name
    from agentid_daemon.config.loader import load_config
    from agentid_daemon.core.errors import AgentIdError

    for name in ("graph-bot", " ", ""):
        config = tmp_path / "c.toml"
        config.write_text(f'[profiles."{name}"]\n')
        try:
            load_config(str(config))
            loads = True
        except AgentIdError:
            loads = False
        assert loads == is_profile_name(name), name


# ---- completion: --profile=<TAB> ---------------------------------------------

COMPLETION_CONFIG = (
    '[profiles.graph-bot]\nmode = "AutonomousApp"\n[profiles.aks]\nmode = "AutonomousApp"\n'
)


def _bash_line_after_tab(tmp_path: Path, typed: str, expect: str, tabs: int = 1) -> str:
    """What a real interactive bash (in a pty, README's eval line loaded) shows
    after ``typed`` and ``tabs`` TABs (two list the matches), read until ``expect``
    appears or 20 s pass."""
    import pty
    import select
    import time

    config = tmp_path / "completion.toml"
    config.write_text(COMPLETION_CONFIG)
    rc = tmp_path / "bashrc"
    bin_dir = Path(sys.executable).parent
    rc.write_text(f'PS1="> "\neval "$({bin_dir}/agentid-helper completion bash)"\n')
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "INPUTRC": "/dev/null",
        "AGENTID_HELPER_CONFIG": str(config),
        "AGENTID_HELPER_NO_AUTOSTART": "1",
    }
    pid, fd = pty.fork()
    if pid == 0:
        os.execve("/bin/bash", ["bash", "--rcfile", str(rc), "-i"], env)
    seen = b""
    try:
        time.sleep(0.5)
        os.write(fd, typed.encode() + b"\t" * tabs)
        deadline = time.monotonic() + 20
        while expect.encode() not in seen:  # typed never holds it
            if time.monotonic() > deadline:
                break
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    return seen.decode(errors="replace").replace("\r", "")


def test_bash_completes_profile_names_after_profile_equals(tmp_path: Path) -> None:
    shown = _bash_line_after_tab(tmp_path, "agentid-helper get --profile=gr", "graph-bot")
    assert "--profile=graph-bot " in shown, shown  # the one match is inserted
    shown = _bash_line_after_tab(tmp_path, "agentid-helper get --profile=", "graph-bot", tabs=2)
    tail = shown.split("--profile=", 1)[1]
    assert "aks" in tail and "graph-bot" in tail and "--mode" not in tail, shown


# ---- doctor --------------------------------------------------------------------

doctor_config = test_client_doctor.config  # doctor's config fixture (fake_daemon: conftest)


def _doctor() -> tuple[int, str]:
    out = io.StringIO()
    return run_doctor(out), out.getvalue()


def test_doctor_says_the_daemon_serves_profiles_of_a_removed_config(
    fake_daemon: FakeDaemon, doctor_config: Path
) -> None:
    doctor_config.unlink()
    fake_daemon.routes[("GET", "/v1/status")] = lambda req: (
        200,
        {
            "daemon": {"pid": 1, "config_path": str(doctor_config), "profiles": ["a", "b", "c"]},
            "entries": [],
        },
    )
    code, text = _doctor()
    assert code == 5, text
    assert f"✘ config {doctor_config}: absent, but the daemon serves 3 profile(s)" in text, text
    assert "absent (empty config)" not in text and "no profiles configured" not in text, text


def test_doctor_config_error_names_the_file_once(
    fake_daemon: FakeDaemon, doctor_config: Path
) -> None:
    doctor_config.write_text("nonsense_key = 1\n")
    code, text = _doctor()
    assert code == 5, text
    line = next(line for line in text.splitlines() if line.startswith("✘ config"))
    assert line.count(str(doctor_config)) == 1, line


def test_doctor_defaults_ca_bundle_line_gives_the_fix(
    fake_daemon: FakeDaemon, doctor_config: Path
) -> None:
    ca = doctor_config.parent / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ca.chmod(0o666)
    text = doctor_config.read_text().replace("[defaults]\n", f'[defaults]\nca_bundle = "{ca}"\n')
    doctor_config.write_text(text)
    code, out = _doctor()
    assert code == 5, out
    lines = out.splitlines()
    at = lines.index(f"✘ defaults: ca_bundle {ca} is writable by group or others (mode 0666)")
    assert lines[at + 1].strip() == f"fix: chmod go-w {ca}", out


def test_zsh_completes_profile_names_after_profile_equals(tmp_path: Path) -> None:
    from test_completion import readme_line, shell_env, zsh_interactive

    config = tmp_path / "completion.toml"
    config.write_text(COMPLETION_CONFIG)
    zdotdir = tmp_path / "zdot"
    zdotdir.mkdir()
    (zdotdir / ".zshrc").write_text(
        f"autoload -Uz compinit; compinit -u -D\n{readme_line('zsh')}\nPROMPT='> '\n"
    )
    env = shell_env(config, tmp_path)
    shown = zsh_interactive(zdotdir, env, "agentid-helper get --profile=gr", "graph-bot ")
    assert "--profile=graph-bot " in shown, shown
    shown = zsh_interactive(zdotdir, env, "agentid-helper get --profile ", "graph-bot")
    assert "aks" in shown and "graph-bot" in shown, shown  # the separate word still works


def test_flush_all_of_an_empty_cache_reads_as_english() -> None:
    from agentid_client.statusview import flush_summary

    empty = {"all": True, "profile": None, "dropped": {}, "tokens": 0, "obo_sessions": 0}
    assert flush_summary(empty) == "nothing was cached"
