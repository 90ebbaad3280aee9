"""git credential protocol: parsing, host mapping, answers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agentid_client import gitcred
from agentid_client.failures import ClientError


def parse(text: str) -> dict:
    return gitcred.parse_request(io.StringIO(text))


def test_parse_lists_and_blank_line() -> None:
    attrs = parse(
        "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=h:8443\n"
        'wwwauth[]=Bearer realm="x"\npath=a/b\n\nhost=ignored\n'
    )
    assert attrs == {
        "capability": ["authtype", "state"],
        "protocol": "https",
        "host": "h:8443",
        "wwwauth": ['Bearer realm="x"'],
        "path": "a/b",
    }


def test_parse_eof_crlf_reset_and_url() -> None:
    assert parse("protocol=https\r\nhost=h\r\n") == {"protocol": "https", "host": "h"}
    assert parse("wwwauth[]=a\nwwwauth[]=\n")["wwwauth"] == []
    attrs = parse("url=https://user@dev.azure.com/org/repo\n")
    assert (attrs["protocol"], attrs["host"], attrs["path"]) == (
        "https",
        "dev.azure.com",
        "org/repo",
    )
    assert parse("garbage line\nhost=h\n") == {"host": "h"}


MAP = {
    "dev.azure.com": "ado",
    "git.example.com/team": "team",
    "git.example.com/team/special": "sp",
    "other:8443": "port",
}


@pytest.mark.parametrize(
    "attrs,profile",
    [
        ({"host": "dev.azure.com"}, "ado"),
        ({"host": "DEV.Azure.com", "path": "org/repo.git"}, "ado"),
        ({"host": "git.example.com", "path": "team/repo.git"}, "team"),
        ({"host": "git.example.com", "path": "team/special/x"}, "sp"),
        ({"host": "git.example.com", "path": "teamx/repo"}, None),
        ({"host": "git.example.com"}, None),
        ({"host": "other:8443"}, "port"),
        ({"host": "dev.azure.com:443"}, "ado"),
        ({"host": "dev.azure.com:8443", "protocol": "https"}, None),  # row 10: another port
        ({"host": "dev.azure.com:443", "protocol": "http"}, None),
        ({}, None),
    ],
)
def test_profile_for(attrs: dict, profile: str | None) -> None:
    assert gitcred.profile_for(attrs, MAP) == profile


@pytest.mark.parametrize(
    "protocol,host,ok",
    [
        ("https", "x", True),
        ("http", "x", False),
        ("http", "localhost:8080", True),
        ("http", "127.0.0.1", True),
        ("http", "[::1]:9", True),
        ("ssh", "x", False),
        ("", "x", False),
    ],
)
def test_protocol_allowed(protocol: str, host: str, ok: bool) -> None:
    assert gitcred.protocol_allowed({"protocol": protocol, "host": host}) is ok


def test_answers() -> None:
    body = {"access_token": "T", "expires_on": 123}
    assert gitcred.answer_get({}, "p", body) == "username=p\npassword=T\npassword_expiry_utc=123\n"
    assert gitcred.answer_get({"username": "me"}, "p", body).startswith("username=me\n")
    assert gitcred.answer_get({"capability": ["authtype"]}, "p", {"access_token": "T"}) == (
        "capability[]=authtype\nauthtype=Bearer\ncredential=T\nephemeral=1\n"
    )


def test_load_git_map(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    assert gitcred.load_git_map(str(cfg)) == {}
    cfg.write_text('[git."Dev.Azure.com/"]\nprofile = "a"\n[profiles.a]\nmode = "OBO"\n')
    assert gitcred.load_git_map(str(cfg)) == {"dev.azure.com": "a"}
    for bad in ("[git\n", "git = 1\n", '[git."h"]\nprofile = 3\n'):
        cfg.write_text(bad)
        with pytest.raises(ClientError) as info:
            gitcred.load_git_map(str(cfg))
        assert info.value.exit_code == 5
