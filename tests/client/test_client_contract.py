"""The facts both sides of the socket share (agentid_client.contract) hold on both sides."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from agentid_client import contract
from agentid_client.cli import CLI
from agentid_client.cliargs import parse
from agentid_client.commands import COMMANDS, SELECTION_DESTS
from agentid_client.failures import ClientError, UsageError
from agentid_client.selection import read_user_token
from agentid_daemon.api import bodies as api
from agentid_daemon.config import fields
from agentid_daemon.config.loader import REQUEST_KEYS, load_config
from agentid_daemon.core.errors import InvalidRequest
from agentid_daemon.core.models import Mode

MAP = {
    "dev.azure.com": "ado",
    "dev.azure.com/contoso/repo": "repo",
    "git.example.com:8443": "port",
}


@pytest.mark.parametrize(
    ("host", "path", "profile"),
    [
        ("Dev.Azure.com", "", "ado"),
        ("dev.azure.com", "/contoso/repo/", "repo"),
        ("dev.azure.com", "contoso/repo/sub", "repo"),
        ("dev.azure.com", "contoso/repository", "ado"),
        # The case config.py and gitcred.py disagreed on: an explicit port.
        ("dev.azure.com:443", "", "ado"),
        ("dev.azure.com:443", "contoso/repo", "repo"),
        ("git.example.com:8443", "x", "port"),
        ("git.example.com", "", None),
        ("github.com", "", None),
        ("", "", None),
    ],
)
def test_git_profile(host: str, path: str, profile: str | None) -> None:
    assert contract.git_profile(MAP, host, path) == profile


@pytest.mark.parametrize(
    ("host", "protocol", "profile"),
    [
        # [git."dev.azure.com"] once matched any port; only the default one may match.
        ("dev.azure.com:8443", "https", None),
        ("dev.azure.com:80", "https", None),
        ("dev.azure.com:444", "https", None),
        ("dev.azure.com:443", "https", "ado"),
        ("dev.azure.com:443", "HTTPS", "ado"),
        ("dev.azure.com:80", "http", "ado"),
        ("dev.azure.com:443", "http", None),
        ("git.example.com:8443", "https", "port"),
        ("git.example.com:443", "https", None),
    ],
)
def test_git_host_table_matches_the_default_port_only(
    host: str, protocol: str, profile: str | None
) -> None:
    assert contract.git_profile(MAP, host, "", protocol) == profile


def test_daemon_and_client_normalise_git_hosts_alike(tmp_path: Any) -> None:
    from agentid_client.gitcred import load_git_map

    path = tmp_path / "config.toml"
    path.write_text(
        '[profiles.p]\nmode = "AutonomousApp"\n[git." Dev.Azure.com/Org/ "]\nprofile = "p"\n'
    )
    assert list(load_config(path, environ={}).git) == list(load_git_map(str(path)))


def test_modes_are_the_daemons_modes() -> None:
    assert tuple(m.value for m in Mode) == contract.MODES


def test_selection_flags_cover_the_selection_fields() -> None:
    assert REQUEST_KEYS == contract.SELECTION_FIELDS
    assert (*SELECTION_DESTS, *contract.FLAGLESS_FIELDS) == contract.SELECTION_FIELDS
    for name in ("get", "kubectl-credential", "exec", "flush"):
        dests = {opt.dest for opt in COMMANDS[name].opts.values()}
        assert set(SELECTION_DESTS) | {"user_token_file"} <= dests, name


def cli_min_validity(value: str) -> Any:
    return CLI()._token_fields(parse(["get", "--min-validity", value], COMMANDS))


@pytest.mark.parametrize("seconds", [0, contract.MAX_MIN_VALIDITY_S])
def test_min_validity_bounds_accepted_everywhere(seconds: int) -> None:
    assert cli_min_validity(str(seconds))["min_validity_s"] == seconds
    assert api.token_options({"min_validity_s": seconds}) == (float(seconds), False)


@pytest.mark.parametrize("seconds", [-1, contract.MAX_MIN_VALIDITY_S + 1])
def test_min_validity_out_of_bounds_refused_everywhere(seconds: int) -> None:
    with pytest.raises(UsageError):
        cli_min_validity(str(seconds))
    with pytest.raises(InvalidRequest):
        api.token_options({"min_validity_s": seconds})


async def test_broker_refuses_what_the_api_refuses() -> None:
    from agentid_daemon.broker.broker import Broker
    from agentid_daemon.cache.token_cache import TokenCache
    from agentid_daemon.core.metrics import Metrics

    broker = Broker(
        None,  # type: ignore[arg-type]  # the bound is checked before the engine is used
        TokenCache(),
        Metrics(),
        limiter=trio.CapacityLimiter(1),
    )
    with pytest.raises(InvalidRequest, match=str(contract.MAX_MIN_VALIDITY_S)):
        await broker.get_token(
            None,  # type: ignore[arg-type]
            min_validity_s=contract.MAX_MIN_VALIDITY_S + 1,
        )


def test_user_token_limit_is_the_daemons() -> None:
    token = "a." + "b" * (contract.MAX_USER_TOKEN_CHARS - 4) + ".c"
    assert fields.user_token(token) == token
    with pytest.raises(ValueError, match=str(contract.MAX_USER_TOKEN_CHARS)):
        fields.user_token(token + "c")


def test_client_refuses_a_user_token_the_daemon_would_refuse(tmp_path: Any) -> None:
    path = tmp_path / "user.jwt"
    path.write_text("a." + "b" * contract.MAX_USER_TOKEN_CHARS + ".c\n")
    with pytest.raises(ClientError, match=str(contract.MAX_USER_TOKEN_CHARS)):
        read_user_token(str(path))
