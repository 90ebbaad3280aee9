"""What the API answers: :class:`Response` values, and their h11 response heads.

:mod:`.protocol` re-exports these names (the API's seam): this module only
keeps the response side of the HTTP layer short and separately readable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h11

from ..core.errors import error_body

SERVER_NAME = "agentid-helper"

Headers = list[tuple[str, str]]

# One encoder for every response: json.dumps() with non-default arguments
# builds a new JSONEncoder per call.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass
class Response:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = field(default=b"", repr=False)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        body = (_JSON_ENCODER.encode(obj) + "\n").encode()
        return cls(status, [("content-type", "application/json"), *headers], body)

    @classmethod
    def error(
        cls,
        status: int,
        error: str,
        description: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        return cls.json(status, error_body(error, description), headers)

    @classmethod
    def empty(cls, status: int = 204, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls(status, list(headers), b"")

    @classmethod
    def text(
        cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        return cls(status, [("content-type", content_type)], text.encode())


HEAD_MEMO_SIZE = 128
_heads: dict[tuple[int, tuple[tuple[str, str], ...], int, bool], h11.Response] = {}


def remembered_heads() -> int:
    """How many distinct response heads are remembered (at most HEAD_MEMO_SIZE)."""
    return len(_heads)


def response_head(response: Response, close: bool) -> h11.Response:
    """The h11 response head of *response*: our headers added, validated once.

    Building an ``h11.Response`` validates every header against h11's
    grammar; responses repeat the same few heads (a token answer differs at
    most in its content-length), and h11 events are immutable, so one event
    per distinct head is reused. Bounded: cleared when full. Heads never
    carry tokens (bodies do, and are not part of the key).
    """
    key = (response.status, tuple(response.headers), len(response.body), close)
    event = _heads.get(key)
    if event is not None:
        return event
    headers = [(k.lower(), v) for k, v in response.headers]
    names = {k for k, _ in headers}
    if "content-length" not in names and response.status not in (204, 304):
        headers.append(("content-length", str(len(response.body))))
    if "cache-control" not in names:
        headers.append(("cache-control", "no-store"))
    headers.append(("server", SERVER_NAME))
    if close:
        headers.append(("connection", "close"))
    event = h11.Response(status_code=response.status, headers=headers)
    if len(_heads) >= HEAD_MEMO_SIZE:
        _heads.clear()
    _heads[key] = event
    return event
