"""The examples in ``--help`` are commands that work.

Every ``agentid-helper ...`` invocation in an example line parses with the
command table (flag drift fails here), and every example runs for real,
through ``bash``, against a daemon on the emulator (in a private HOME and
KUBECONFIG), except the few in NOT_RUN, each with its reason: a new example
either runs or says why it cannot. The ``jq`` examples are also checked
against the real output's shape.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from client_stack import client_stack

from agentid_client.cliargs import HelpRequested, parse
from agentid_client.commands import COMMANDS, EXAMPLES

PROGRAM = "agentid-helper"
_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


def example_lines() -> list[str]:
    """Every command line of the examples (comment lines and continuations joined)."""
    texts = [EXAMPLES, *(cmd.epilog for cmd in COMMANDS.values())]
    lines: list[str] = []
    for text in texts:
        pending = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or line.endswith(":"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
    return lines


def invocations(line: str) -> list[list[str]]:
    """The argument lists of each ``agentid-helper`` call on a shell line."""
    # A helper call may sit in a command substitution or in a quoted string
    # (git's `credential.helper` value): their edges end the call like `;`.
    flat = line
    for edge in ("$(", ")", '"', "'"):
        flat = flat.replace(edge, " ; ")
    words = shlex.split(flat.split("#", 1)[0], posix=True)
    calls: list[list[str]] = []
    current: list[str] | None = None
    for word in words:
        if word == PROGRAM or word.endswith("/" + PROGRAM):
            current = []
            calls.append(current)
        elif word in _OPERATORS or word.endswith(";"):
            current = None
        elif current is not None:
            current.append(word)
    return calls


def test_examples_are_found() -> None:
    lines = example_lines()
    assert any("status --json | jq" in line for line in lines)
    assert sum(len(invocations(line)) for line in lines) >= 25


@pytest.mark.parametrize("line", example_lines())
def test_every_example_invocation_parses(line: str) -> None:
    for argv in invocations(line):
        if not argv:
            continue
        try:
            parsed = parse(argv, COMMANDS)
        except HelpRequested:
            continue
        assert parsed.command in COMMANDS


def jq_examples() -> list[str]:
    return [line for line in example_lines() if "| jq" in line and line.startswith(PROGRAM)]


def test_the_jq_examples_are_the_ones_run_below() -> None:
    assert sorted(jq_examples()) == sorted(
        [
            "agentid-helper get --format json | jq .expires_on",
            "agentid-helper status --json | jq '.entries[] | {profile, mode, expires_on}'",
        ]
    )


def run_line(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The console script installed next to this interpreter is the one on PATH.
    bindir = str(Path(sys.executable).parent)
    path = bindir + os.pathsep + env.get("PATH", os.defpath)
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        capture_output=True,
        text=True,
        env={**env, "PATH": path},
        timeout=90,
    )


def test_jq_examples_run_against_real_output(emulator: Any, tmp_path: Path) -> None:
    with client_stack(emulator, tmp_path) as stack:
        examples = {line.split("|")[0].split()[1]: line for line in jq_examples()}
        got = run_line(examples["get"], stack.env)
        status = run_line(examples["status"], stack.env)
    assert got.returncode == 0, got.stderr
    assert int(got.stdout) > 0
    assert status.returncode == 0, status.stderr
    rows = [json.loads(chunk) for chunk in status.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert {"profile", "mode", "expires_on"} <= set(rows[0])
    assert any(row["mode"] == "AutonomousApp" for row in rows)


# Examples that cannot run here, and why. Every other example runs below.
NOT_RUN = {
    "agentid-helper exec -- az rest --url https://graph.microsoft.com/v1.0/me": "internet, az",
    'curl -H "$(agentid-helper get --format header)" https://graph.microsoft.com/v1.0/me': (
        "internet"
    ),
    "agentid-helper get --profile bot --mode AutonomousUser --user-upn a@contoso.com "
    "--scope User.Read": "a user of a real tenant",
    'agentid-helper exec -- sh -c \'curl -H "Authorization: Bearer $AGENTID_ACCESS_TOKEN" '
    "https://graph.microsoft.com/v1.0/users'": "internet",
    "agentid-helper secret set --blueprint-app-id 11111111-2222-3333-4444-555555555555  "
    "# prompts": "a terminal prompt (tests/client/test_client_secret_prompt.py covers it)",
    "pass show entra/bp | agentid-helper secret set --blueprint-app-id 1111...          "
    "# from stdin": "pass(1) and a placeholder id",
    "agentid-helper secret delete --blueprint-app-id 11111111-2222-3333-4444-555555555555": (
        "the user's keyring"
    ),
    "agentid-helper daemon            # arguments after `daemon` go to agentid-helperd": (
        "runs until stopped"
    ),
    "agentid-helper daemon --log-level debug --log-format console": "runs until stopped",
    "systemctl --user start agentid-helper.socket   # or let systemd start it on demand": (
        "a user manager (tests/daemon/process/test_socket_activation.py)"
    ),
    "agentid-helper logs -f      # Ctrl-C ends": (
        "follows until interrupted (tests/client/test_operate_daemon.py runs it, bounded)"
    ),
    "agentid-helper init                   # asks; an administrator signs in by device code": (
        "a terminal and an administrator approving the code "
        "(tests/daemon/provision/test_init_wizard.py drives both against the emulator)"
    ),
    "(umask 077; az account get-access-token --resource https://graph.microsoft.com "
    "> graph.json)": ("az signed in to a real tenant"),
    "agentid-helper init --non-interactive --graph-token-file graph.json  --tenant-id "
    "contoso.onmicrosoft.com --agent-name build-bot --credential secret-file": (
        "a real tenant's Graph token (test_init_wizard.py runs these flags on the emulator)"
    ),
    "agentid-helper systemd install --now": "changes the user manager",
    "agentid-helper systemd uninstall": "changes the user manager",
    "source <(agentid-helper completion zsh)": (
        "zsh, not bash (tests/client/test_completion.py runs it in an interactive zsh)"
    ),
}

EXAMPLE_PROFILES = ("graph-bot", "bot", "ops", "aks", "repo-bot")


@pytest.fixture(scope="module")
def example_stack(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A daemon on the emulator with the examples' profiles, and a home to run them in."""
    from emulator_config import GRAPH_RESOURCE, emulator_profile, secret_file, toml_dumps
    from emulator_config import emulator_config as build

    work = tmp_path_factory.mktemp("examples")
    credential = {"secret_file": str(secret_file(emulator, work / "bp.secret"))}
    profiles = {
        name: emulator_profile(emulator.info, resource=GRAPH_RESOURCE, credential=credential)
        for name in EXAMPLE_PROFILES
    }
    with client_stack(emulator, work) as stack:
        config = build(
            emulator.info,
            credential,
            profiles=profiles,
            default_profile="graph-bot",
            git={"dev.azure.com": "repo-bot"},
        )
        # `agent` / `agent-user` examples provision through the emulator's Graph.
        config["defaults"]["graph_endpoint"] = emulator.info["graph_endpoint"]
        stack.config.write_text(toml_dumps(config))
        home = work / "home"
        (home / ".kube").mkdir(parents=True)
        user_token = emulator.user_token(emulator.user_upn, audience=emulator.blueprint_app_id)
        (home / "user-token.jwt").write_text(user_token + "\n")
        deploy = home / "deploy.sh"
        deploy.write_text('#!/bin/sh\ntest -n "$AZURE_ACCESS_TOKEN"\n')
        deploy.chmod(0o755)
        (home / "my_agent.py").write_text(
            "import os, sys\nsys.exit(0 if os.environ['AGENTID_ACCESS_TOKEN'] else 1)\n"
        )
        (home / "my_service.py").write_text(  # exec --no-token-env: the endpoint only
            "import os, sys\nsys.exit(0 if os.environ['IDENTITY_ENDPOINT'] and "
            "'AGENTID_ACCESS_TOKEN' not in os.environ else 1)\n"
        )
        env = {
            **stack.env,
            "HOME": str(home),
            "KUBECONFIG": str(home / ".kube" / "config"),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        yield home, env


def runnable_examples() -> list[str]:
    return [line for line in example_lines() if line not in NOT_RUN]


def test_not_run_list_names_real_examples() -> None:
    assert set(NOT_RUN) <= set(example_lines())


@pytest.mark.parametrize("line", runnable_examples())
def test_example_runs(line: str, example_stack: Any) -> None:
    home, env = example_stack
    bindir = str(Path(sys.executable).parent)
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        capture_output=True,
        text=True,
        cwd=home,
        env={**env, "PATH": bindir + os.pathsep + env.get("PATH", os.defpath)},
        timeout=90,
    )
    assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
