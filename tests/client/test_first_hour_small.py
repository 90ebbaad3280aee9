"""The small things a first hour trips over: README claims that match the
code, a --timeout error that says what is allowed, AADSTS ids never cut in
half, and ``status`` showing the scope a token was granted (the one
``get --format json`` reports).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack
from tooling import ROOT

from agentid_client.commands import COMMANDS
from agentid_client.daemon_api import MAX_TIMEOUT_S
from agentid_client.statusview import render_status
from agentid_daemon.core.errors import clip_at_word
from agentid_daemon.idp.results import error_from_result

README = ROOT / "README.md"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A run of hex digits and dashes standing as its own word: an id, or part of one.
GUID_PIECE = re.compile(r"(?<![\w-])[0-9a-f][0-9a-f-]{5,}")


@pytest.fixture
def stack(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    with client_stack(emulator, tmp_path) as env:
        yield env


def readme_json_fields() -> list[str]:
    """The fields README.md's `get --format json` line lists in its comment."""
    for line in README.read_text().splitlines():
        if "get" in line and "--format json" in line and "#" in line:
            comment = line.split("#", 1)[1].strip()
            if re.fullmatch(r"\w+(, \w+)+", comment):
                return comment.split(", ")
    raise AssertionError("README.md has no commented `get --format json` line")


def test_readme_json_fields_are_the_real_response_keys(stack: Env) -> None:
    done = stack.run("get", "--profile", "app", "--format", "json")
    assert done.returncode == 0, done.stderr
    keys = set(json.loads(done.stdout))
    named = readme_json_fields()
    assert "access_token" in named  # the token's own field, by its real name
    assert set(named) <= keys, f"README names fields the response lacks: {set(named) - keys}"
    # every field README leaves out is documented in docs/api.md's response table
    api_doc = (ROOT / "docs" / "api.md").read_text()
    for key in keys - set(named):
        assert f"| `{key}` |" in api_doc, key


def readme_az_fields() -> list[str]:
    """The fields README.md says `get --format az` prints: the backticked names
    in the parenthesis after "`--format az` prints"."""
    text = " ".join(README.read_text().split())
    after = text.split("`--format az` prints", 1)[1]
    listed = after[after.index("(") + 1 : after.index(")")]
    return re.findall(r"`(\w+)`", listed)


def api_doc_token_example_keys() -> set[str]:
    """The keys of docs/api.md's `POST /v1/token` answer example."""
    doc = (ROOT / "docs" / "api.md").read_text()
    for block in re.findall(r"```json\n(.*?)```", doc, re.S):
        if '"access_token"' in block and '"source"' in block:
            return set(json.loads(block.replace('"..."', '"x"')))
    raise AssertionError("docs/api.md has no token answer example")


def test_readme_az_fields_and_api_doc_example_are_the_real_keys(stack: Env) -> None:
    az = stack.run("get", "--profile", "app", "--format", "az")
    assert az.returncode == 0, az.stderr
    assert sorted(readme_az_fields()) == sorted(json.loads(az.stdout))
    done = stack.run("get", "--profile", "app", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert api_doc_token_example_keys() == set(json.loads(done.stdout))


@pytest.mark.parametrize("value", ["0", "-1", "86401", "nan", "soon"])
def test_timeout_out_of_range_says_what_is_allowed(value: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentid_client", "get", "--timeout", value],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "AGENTID_HELPER_SOCKET": str(tmp_path / "none.sock")},
        check=False,
    )
    assert done.returncode == 2
    first = done.stderr.splitlines()[0]
    assert "greater than 0" in first and f"at most {MAX_TIMEOUT_S:g}" in first, first
    assert f"(got {value!r})" in first
    # the command table's help says the same range
    help_text = COMMANDS["get"].opts["--timeout"].help
    assert f"0 < S <= {MAX_TIMEOUT_S:g}" in help_text


def _pad_to(text: str, length: int) -> str:
    """``text`` with filler words up to ``length`` characters."""
    while len(text) < length:
        text += " the"
    return text[:length]


def _long_aadsts_description() -> tuple[str, list[str]]:
    """An Entra-like description whose ids straddle where a plain cut would
    fall (the 200 of the systemd status line, the 300 of an error message)."""
    ids = [
        "11111111-2222-3333-4444-555555555555",
        "66666666-7777-8888-9999-000000000000",
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    ]
    text = f"AADSTS700016: Application with identifier '{ids[0]}' was not found in the directory"
    text = _pad_to(text, 180) + f" '{ids[1]}'"  # spans 181..218
    text = _pad_to(text, 280) + f" blueprint {ids[2]}."  # spans 291..327
    text = _pad_to(text, 360) + " Trace ID: x Correlation ID: y Timestamp: z"
    return text, ids


def test_a_long_aadsts_description_is_cut_between_words() -> None:
    description, ids = _long_aadsts_description()
    err = error_from_result(
        "t1", {"error": "unauthorized_client", "error_description": description}, None
    )
    message = str(err)
    assert message.endswith(" ...")
    for piece in GUID_PIECE.findall(message):  # every id that shows is whole
        assert piece.rstrip("-") in ids, message
    assert "AADSTS700016" in message
    assert ids[0] in message and ids[1] in message


def test_clip_at_word_keeps_whole_words() -> None:
    text = "alpha beta 11111111-2222-3333-4444-555555555555 gamma"
    for limit in range(len("alpha ..."), len(text) + 1):
        clipped = clip_at_word(text, limit)
        assert len(clipped) <= limit
        words = clipped.removesuffix(" ...").split()
        assert all(w in text.split() for w in words), clipped
    assert clip_at_word(text, len(text)) == text


def test_status_table_shows_the_whole_last_error() -> None:
    description, ids = _long_aadsts_description()
    body = {
        "entries": [
            {
                "kind": "resource",
                "profile": "app",
                "mode": "AutonomousApp",
                "agent_identity_app_id": ids[0],
                "scopes": ["https://graph.microsoft.com/.default"],
                "last_error": f"IdentityProviderError: t1: unauthorized_client: {description}",
            }
        ]
    }
    out = render_status(body, now=0)
    for guid in ids:
        assert guid in out
    assert "AADSTS700016" in out


def test_status_shows_the_granted_scope_of_get(stack: Env) -> None:
    # AutonomousUser with a short Graph scope: Entra grants it as the full URI
    done = stack.run("get", "--profile", "user", "--scope", "User.Read", "--format", "json")
    assert done.returncode == 0, done.stderr
    granted = json.loads(done.stdout)["scope"]
    raw = stack.run("status", "--json")
    assert raw.returncode == 0, raw.stderr
    entries = [e for e in json.loads(raw.stdout)["entries"] if e.get("profile") == "user"]
    assert [e["granted_scope"] for e in entries] == [granted]
    table = stack.run("status").stdout
    row = next(line for line in table.splitlines() if line.startswith("user "))
    assert granted in row, table


def test_the_systemd_status_line_keeps_ids_whole() -> None:
    from daemon_fakes import FakeCache

    from agentid_daemon.process.sdnotify import StatusLine

    description, ids = _long_aadsts_description()
    activity = StatusLine(cache=FakeCache(entries=1))
    activity.on_event("fetch", label="t1", outcome="error", error=description)
    text = activity.text()
    assert "AADSTS700016" in text and ids[0] in text
    for piece in GUID_PIECE.findall(text):
        assert piece.rstrip("-") in ids, text
