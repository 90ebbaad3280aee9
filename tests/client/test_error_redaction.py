"""A token pasted into the wrong flag or key is never echoed by an error text.

The value here is a real token from the emulator (a signed JWT, over a
thousand characters): it goes into each selection flag of the real client,
talking to a real (autostarted) daemon, into the config file, and into the
managed identity endpoint's query. Every error still names what was wrong,
in one short line, with at most the token's first characters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack

from agentid_client.redact import MAX_QUOTED_CHARS, SHOWN_PREFIX_CHARS, quoted
from agentid_daemon.config.loader import load_config
from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.identity_endpoint import protocol as mi_protocol

# One line of "agentid-helper: error: ..." plus a hint line or two.
MAX_STDERR_CHARS = 600


@pytest.fixture
def client_env(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    with client_stack(emulator, tmp_path) as env:
        yield env


def assert_not_echoed(text: str, token: str) -> None:
    """No piece of the token beyond its shown prefix appears in ``text``."""
    assert token not in text
    # Any 12-character window of the token past the prefix would be a leak.
    for start in range(SHOWN_PREFIX_CHARS, len(token) - 12, 12):
        assert token[start : start + 12] not in text, f"token bytes at {start} leaked"


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--agent-identity-app-id"], "agent_identity_app_id"),
        (["--blueprint-app-id"], "blueprint_app_id"),
        (["--tenant-id"], "tenant_id"),
        (["--profile"], "profile"),
        (["--scope"], "scope"),
        (["--mode", "AutonomousUser", "--user-upn"], "user_upn"),
        (["--mode", "AutonomousUser", "--user-object-id"], "user_object_id"),
        (["--mode", "OBO", "--obo-session"], "obo_session"),
        (["--mode"], "--mode"),  # refused by the client itself
        (["--min-validity"], "--min-validity"),  # refused by the client itself
    ],
)
def test_token_in_a_selection_flag_is_not_echoed(
    client_env: Env, pasted_token: str, flags: list[str], names: str
) -> None:
    got = client_env.run("get", *flags, pasted_token)
    assert got.returncode == 2, got.stderr
    assert got.stdout == ""
    assert_not_echoed(got.stderr, pasted_token)
    assert len(got.stderr) < MAX_STDERR_CHARS, got.stderr
    # Still says which value was wrong, and shows it was the pasted one.
    assert names in got.stderr or names.replace("_", " ") in got.stderr
    assert f"{len(pasted_token)} characters, not shown" in got.stderr or names == "profile"


def test_token_as_an_unknown_command_or_argument_is_not_echoed(
    client_env: Env, pasted_token: str
) -> None:
    for argv in (
        [pasted_token],
        ["get", pasted_token],
        ["exec", "--env-var", pasted_token, "true"],
    ):
        got = client_env.run(*argv)
        assert got.returncode == 2, got.stderr
        assert_not_echoed(got.stderr, pasted_token)
        assert len(got.stderr) < MAX_STDERR_CHARS


def test_token_in_the_config_file_is_not_echoed(tmp_path: Path, pasted_token: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[defaults]\ntenant_id = "{pasted_token}"\n')
    config.chmod(0o600)
    with pytest.raises(ConfigurationError) as raised:
        load_config(config)
    text = str(raised.value)
    assert "tenant_id" in text
    assert_not_echoed(text, pasted_token)
    assert len(text) < MAX_STDERR_CHARS


def test_token_in_the_managed_identity_query_is_not_echoed(pasted_token: str) -> None:
    target = f"{mi_protocol.PATH}?resource=https://graph.microsoft.com&api-version={pasted_token}"
    with pytest.raises(mi_protocol.MIRequestError) as raised:
        mi_protocol.parse_target(target[: mi_protocol.MAX_TARGET_BYTES])
    assert "api-version" in raised.value.message
    assert_not_echoed(raised.value.message, pasted_token)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("graph-bot", "'graph-bot'"),
        ("1234abcd-0000-0000-0000-00000000000", "'1234abcd-0000-0000-0000-00000000000'"),
        ("x" * MAX_QUOTED_CHARS, repr("x" * MAX_QUOTED_CHARS)),
        ("x" * (MAX_QUOTED_CHARS + 1), f"'xxxx...' ({MAX_QUOTED_CHARS + 1} characters, not shown)"),
        ("eyJhbGciOi", "'eyJh...' (10 characters, not shown)"),
        # An Entra client secret's shape: "~" among the first characters, 40 long.
        ("Abc8Q~" + "z" * 34, "'Abc8...' (40 characters, not shown)"),
        ("\x1b[2J" + "e" * 70, "'?[2J...' (74 characters, not shown)"),
    ],
)
def test_quoted(value: str, shown: str) -> None:
    assert quoted(value) == shown
