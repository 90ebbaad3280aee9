"""Selection flags -> request fields; user token files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agentid_client.failures import ClientError
from agentid_client.selection import read_user_token, request_fields


def test_only_given_fields() -> None:
    assert request_fields({}, "get") == {}
    assert request_fields(
        {"scope": [" a  b", "c "], "mode": "OBO", "user_upn": " u@x "}, "get"
    ) == {"scope": "a b c", "mode": "OBO", "user_upn": "u@x"}


@pytest.mark.parametrize("opts", [{"scope": ["  "]}, {"profile": " "}])
def test_empty_values_rejected(opts: dict) -> None:
    with pytest.raises(ClientError) as info:
        request_fields(opts, "get")
    assert info.value.exit_code == 2


def test_user_token_sources(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text("\n a.b.c \n")
    assert read_user_token(str(f)) == "a.b.c"
    assert read_user_token("-", io.StringIO("x.y.z\n")) == "x.y.z"
    assert request_fields({"user_token_file": "-"}, "get", io.StringIO("q"))["user_token"] == "q"


@pytest.mark.parametrize("content", ["", "  \n", "a b", "x" * 70_000])
def test_bad_user_token_files(tmp_path: Path, content: str) -> None:
    f = tmp_path / "t"
    f.write_text(content)
    with pytest.raises(ClientError) as info:
        read_user_token(str(f))
    assert info.value.exit_code == 2
    assert content.strip()[:20] not in info.value.message or not content.strip()
