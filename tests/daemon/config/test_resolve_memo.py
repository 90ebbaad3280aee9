"""Tests for resolve_memo.py and Config.resolve's use of it (the cache-hit fast path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentid_daemon.config.loader import Config, load_config
from agentid_daemon.config.resolve_memo import RESOLVE_MEMO_SIZE, ResolveMemo, memo_key
from agentid_daemon.core.errors import InvalidRequest, UnknownProfile
from agentid_daemon.core.models import Mode

T = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"
A = "33333333-3333-3333-3333-333333333333"
A2 = "55555555-5555-5555-5555-555555555555"
USER_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyIn0.c2ln"

CONFIG = f"""
default_profile = "app"

[defaults]
tenant_id = "{T}"

[profiles.app]
blueprint_app_id = "{B}"
agent_identity_app_id = "{A}"
scope = "https://graph.microsoft.com/.default"

[profiles.obo]
blueprint_app_id = "{B}"
agent_identity_app_id = "{A}"
mode = "OBO"
scope = "api://x/.default"
"""


def load(tmp_path: Path, text: str = CONFIG) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, environ={})


def test_same_fields_resolve_to_the_same_request_once(tmp_path: Path) -> None:
    config = load(tmp_path)
    first = config.resolve({"profile": "app"})
    assert config.resolve({"profile": "app", "min_validity_s": 5, "scope": None}) is first
    assert config.resolve({}) is not first  # another key (the default profile), resolved anew
    assert config.resolve({}) == first
    other = config.resolve({"profile": "app", "scope": ["api://other/.default"]})
    assert other.scopes != first.scopes
    assert config.resolve({"profile": "app", "scope": ["api://other/.default"]}) is other


def test_memo_answers_like_resolve(tmp_path: Path) -> None:
    memoised, fresh = load(tmp_path), load(tmp_path)
    cases = [
        {"profile": "app"},
        {"profile": "app", "agent_identity_app_id": A2.upper()},
        {"profile": "app", "scope": "API://Y/.default"},
        {"profile": "obo", "user_token": USER_TOKEN},
        {"mode": "AutonomousUser", "user_upn": "Bot@Contoso.com", "scope": "User.Read"},
    ]
    for fields in cases:
        memoised.resolve(fields)
        fresh.forget_resolved()
        assert memoised.resolve(fields) == fresh.resolve(fields)


def test_errors_are_not_remembered(tmp_path: Path) -> None:
    config = load(tmp_path)
    for _ in range(2):
        with pytest.raises(UnknownProfile):
            config.resolve({"profile": "nope"})
        with pytest.raises(InvalidRequest):
            config.resolve({"profile": "obo"})  # no user token
        with pytest.raises(InvalidRequest):
            config.resolve({"tenant_id": 5})
    assert config.remembered == 0


def test_obo_user_token_keys_by_hash_and_requests_stay_apart(tmp_path: Path) -> None:
    config = load(tmp_path)
    one = config.resolve({"profile": "obo", "user_token": USER_TOKEN})
    two = config.resolve({"profile": "obo", "user_token": USER_TOKEN + "x"})
    assert one.user_token == USER_TOKEN
    assert two.user_token == USER_TOKEN + "x"
    assert one.cache_key() != two.cache_key()
    key = memo_key({"profile": "obo", "user_token": USER_TOKEN})
    assert key is not None
    assert USER_TOKEN not in repr(key)
    assert USER_TOKEN not in repr(config)
    memo = ResolveMemo()
    memo.put(key, one)
    assert USER_TOKEN not in repr(memo)


def test_memo_is_bounded_lru() -> None:
    memo = ResolveMemo(maxsize=2)
    a, b, c = (object() for _ in range(3))
    memo.put((("k", "a"),), a)  # type: ignore[arg-type]
    memo.put((("k", "b"),), b)  # type: ignore[arg-type]
    assert memo.get((("k", "a"),)) is a  # a is now the most recent
    memo.put((("k", "c"),), c)  # type: ignore[arg-type]
    assert len(memo) == 2
    assert memo.get((("k", "b"),)) is None
    assert memo.get((("k", "a"),)) is a
    assert memo.get((("k", "c"),)) is c
    memo.clear()
    assert len(memo) == 0


def test_config_memo_is_bounded(tmp_path: Path) -> None:
    config = load(tmp_path)
    for n in range(RESOLVE_MEMO_SIZE + 50):
        config.resolve({"profile": "app", "scope": f"api://{n}/.default"})
    assert config.remembered == RESOLVE_MEMO_SIZE


@pytest.mark.parametrize(
    ("fields", "memoisable"),
    [
        ({"profile": "app"}, True),
        ({"scope": ["a", "b"]}, True),
        ({"scope": ["a", 1]}, False),
        ({"tenant_id": 5}, False),
        ({"profile": None, "force_refresh": True}, True),
    ],
)
def test_memo_key_shapes(fields: dict, memoisable: bool) -> None:
    key = memo_key(fields, ignore=("min_validity_s", "force_refresh"))
    assert (key is not None) is memoisable
    if fields.get("force_refresh"):
        assert key == ()


def test_scope_string_and_list_do_not_collide() -> None:
    assert memo_key({"scope": "a"}) != memo_key({"scope": ["a"]})


def test_reload_starts_a_fresh_memo(tmp_path: Path) -> None:
    old = load(tmp_path)
    before = old.resolve({"profile": "app"})
    new = load(tmp_path, CONFIG.replace(A, A2))
    after = new.resolve({"profile": "app"})
    assert after is not before
    assert after.agent.agent_identity_app_id == A2
    old.forget_resolved()
    assert old.remembered == 0
    assert before.mode is Mode.AUTONOMOUS_APP
