"""Config keys and request fields of issue "when the resource says no":
client_capabilities, obo_session, obo_session_max_age_s, flush selections."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import GOOD, JWT, write

from agentid_daemon.config.loader import Config, load_config
from agentid_daemon.core.errors import ConfigurationError, InvalidRequest

CAE = GOOD.replace('mode = "OBO"\n', 'mode = "OBO"\nclient_capabilities = ["cp1"]\n').replace(
    "idle_timeout_s = 600\n", "idle_timeout_s = 600\nobo_session_max_age_s = 7200\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write(tmp_path, CAE), environ={})


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), environ={})
    assert cfg.daemon.obo_session_max_age_s == 86_400
    assert cfg.resolve({}).agent.client_capabilities == ()


def test_client_capabilities_and_max_age(config: Config) -> None:
    assert config.daemon.obo_session_max_age_s == 7200
    req = config.resolve({"profile": "obo-bot", "user_token": JWT})
    assert req.agent.client_capabilities == ("cp1",)
    assert req.cache_key().client_capabilities == ("cp1",)
    # a request (azure-core's enable_cae) adds capabilities, never removes the profile's
    more = config.resolve(
        {"profile": "obo-bot", "user_token": JWT, "client_capabilities": ["cp1", "x"]}
    )
    assert more.agent.client_capabilities == ("cp1", "x")
    plain = config.resolve({"client_capabilities": ["cp1"]})
    assert plain.agent.client_capabilities == ("cp1",)
    assert plain.cache_key() != config.resolve({}).cache_key()  # CAE tokens kept apart


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("client_capabilities = 1", "list of strings"),
        ("client_capabilities = [1]", "not a capability name"),
    ],
)
def test_bad_capabilities(tmp_path: Path, line: str, match: str) -> None:
    text = GOOD.replace('mode = "OBO"\n', f'mode = "OBO"\n{line}\n')
    with pytest.raises(ConfigurationError, match=rf"\[profiles.obo-bot\].*{match}"):
        load_config(write(tmp_path, text), environ={})


def test_bad_max_age(tmp_path: Path) -> None:
    text = GOOD.replace("idle_timeout_s = 600\n", "obo_session_max_age_s = 0\n")
    with pytest.raises(ConfigurationError, match=r"obo_session_max_age_s.*positive"):
        load_config(write(tmp_path, text), environ={})


def test_obo_session_needs_no_user_token(config: Config) -> None:
    req = config.resolve({"profile": "obo-bot", "obo_session": "job-1"})
    assert req.obo_session == "job-1"
    assert req.user_token is None
    assert req.cache_key().user == "obo-session:job-1"
    started = config.resolve({"profile": "obo-bot", "obo_session": "job-1", "user_token": JWT})
    assert started.cache_key() == req.cache_key()  # one key, with or without the user token


def test_obo_session_checks(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="obo_session is only valid with mode OBO"):
        config.resolve({"obo_session": "job-1"})
    with pytest.raises(InvalidRequest, match="not a session name"):
        config.resolve({"profile": "obo-bot", "obo_session": "a b"})
    with pytest.raises(InvalidRequest, match="--obo-session"):
        config.resolve({"profile": "obo-bot"})


def test_selection_for_flush_needs_no_user_token(config: Config) -> None:
    req = config.resolve_selection({"profile": "obo-bot"})
    assert req.user_token is None
    assert req.cache_key().user is None
