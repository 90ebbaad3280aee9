"""Tests for responses.py: Response constructors and the memo of h11 response heads."""

from __future__ import annotations

import json

import h11
import pytest

from agentid_daemon.server import responses
from agentid_daemon.server.responses import SERVER_NAME, Response, response_head


def test_json_body_is_compact_and_ascii() -> None:
    obj = {"a": [1, 2.5, None], "é": "ü\n"}
    resp = Response.json(200, obj, [("x-extra", "1")])
    assert resp.body == json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    assert resp.headers == [("content-type", "application/json"), ("x-extra", "1")]


def test_head_adds_our_headers() -> None:
    head = response_head(Response.json(200, {"k": 1}), close=False)
    headers = dict(head.headers)
    assert head.status_code == 200
    assert headers[b"content-length"] == b"8"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"server"] == SERVER_NAME.encode()
    assert b"connection" not in headers
    closing = dict(response_head(Response.json(200, {"k": 1}), close=True).headers)
    assert closing[b"connection"] == b"close"
    assert b"content-length" not in dict(response_head(Response.empty(204), close=False).headers)
    own = Response(200, [("Cache-Control", "max-age=1")], b"x")
    assert dict(response_head(own, close=False).headers)[b"cache-control"] == b"max-age=1"


def test_heads_are_reused_per_shape_and_bounded() -> None:
    one = response_head(Response.json(200, {"token": "a" * 10}), close=False)
    assert response_head(Response.json(200, {"token": "b" * 10}), close=False) is one
    assert response_head(Response.json(200, {"token": "b" * 11}), close=False) is not one
    for n in range(responses.HEAD_MEMO_SIZE + 10):
        response_head(Response(200, [("x-n", str(n))]), close=False)
    assert responses.remembered_heads() <= responses.HEAD_MEMO_SIZE


def test_bad_header_raises_h11_error() -> None:
    with pytest.raises(h11.LocalProtocolError):
        response_head(Response(200, [("bad header", "x")]), close=False)
