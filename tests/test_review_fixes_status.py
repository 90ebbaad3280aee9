"""Review fixes: ``status``'s SCOPE cell is the key ``flush --scope`` selects
(with the granted scope beside it when it differs), the idle-exit line does
not read like a countdown, ``--profile=<TAB>`` completes profiles,
``kubeconfig-user --merge`` names the user's file and checks its arguments,
and doctor's small inaccuracies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack

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
