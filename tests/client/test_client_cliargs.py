"""The hand parser: options, values, positionals, rest, errors."""

from __future__ import annotations

import pytest

from agentid_client.cliargs import HelpRequested
from agentid_client.cliargs import parse as parse_with
from agentid_client.commands import COMMANDS
from agentid_client.failures import UsageError


def parse(argv: list[str]):  # type: ignore[no-untyped-def]
    return parse_with(argv, COMMANDS)


def test_options_and_values() -> None:
    p = parse(["get", "--profile=a", "--scope", "x y", "--scope", "z", "--force-refresh"])
    assert (p.command, p.opts) == (
        "get",
        {"profile": "a", "scope": ["x y", "z"], "force_refresh": True},
    )


def test_exec_rest_with_and_without_separator() -> None:
    assert parse(["exec", "--profile", "a", "--", "ls", "--profile"]).rest == ["ls", "--profile"]
    p = parse(["exec", "--env-var", "T", "curl", "-s", "--x"])
    assert (p.opts, p.rest) == ({"env_var": "T"}, ["curl", "-s", "--x"])


def test_daemon_passthrough() -> None:
    assert parse(["daemon", "--log-level", "debug"]).rest == ["--log-level", "debug"]
    with pytest.raises(HelpRequested):
        parse(["daemon", "--help"])


def test_positionals() -> None:
    assert parse(["git-credential", "--profile", "p", "get"]).positionals == ["get"]
    assert parse(["git-credential", "whatever"]).positionals == ["whatever"]
    assert parse(["secret", "delete", "--blueprint-app-id", "b"]).positionals == ["delete"]


@pytest.mark.parametrize(
    "argv",
    [
        ["zzz"],
        ["get", "--nope"],
        ["get", "--mode", "x"],
        ["get", "--mode"],
        ["status", "--json=1"],
        ["secret", "rotate"],
        ["systemd", "install", "extra"],
        ["get", "-x"],
    ],
)
def test_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(argv)


@pytest.mark.parametrize(
    "argv,command",
    [
        ([], None),
        (["-h"], None),
        (["help", "get"], "get"),
        (["get", "--profile", "x", "-h"], "get"),
    ],
)
def test_help(argv: list[str], command: str | None) -> None:
    with pytest.raises(HelpRequested) as info:
        parse(argv)
    assert info.value.command == command


def test_short_aliases_of_logs() -> None:
    assert parse(["logs", "-f", "-n", "20"]).opts == {"follow": True, "lines": "20"}
    assert parse(["logs", "--follow", "--lines=3"]).opts == {"follow": True, "lines": "3"}
    with pytest.raises(UsageError, match="unknown option -f"):
        parse(["status", "-f"])  # a short alias belongs to its command only
