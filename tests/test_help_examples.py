"""The examples in ``--help`` are commands that work.

Every ``agentid-helper ...`` invocation in an example line parses with the
command table (flag drift fails here), and the examples that pipe real output
into ``jq`` run for real, through ``bash``, against a daemon on the emulator.
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
