"""Parse and judge what the daemon answered to hostile input (for the HTTP fuzzers).

The contract checked here: every answer is a well-formed HTTP/1.1 response
(status line, headers, a body of exactly ``Content-Length`` bytes), never a
5xx, and every 4xx carries the API's JSON error (``error`` and
``error_description``). "No answer, connection closed" is also acceptable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) [^\r\n]*$")
NO_BODY_STATUSES = (204, 304)


@dataclass
class ParsedResponse:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)


def parse_responses(data: bytes, *, head_only: bool = False) -> list[ParsedResponse]:
    """Split *data* into responses; AssertionError on anything malformed."""
    responses: list[ParsedResponse] = []
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {head[:200]!r}"
        lines = head.split(b"\r\n")
        match = STATUS_LINE.match(lines[0])
        assert match, f"bad status line {lines[0][:200]!r}"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            assert colon, f"bad header line {line[:200]!r}"
            assert name, f"bad header line {line[:200]!r}"
            assert name == name.strip(), f"bad header line {line[:200]!r}"
            headers[name.decode("ascii").lower()] = value.decode("latin-1").strip()
        status = int(match.group(1))
        length = 0
        if status not in NO_BODY_STATUSES and not head_only:
            assert "content-length" in headers, f"no content-length in {headers}"
            length = int(headers["content-length"])
        assert len(rest) >= length, f"body shorter than content-length {length}"
        responses.append(ParsedResponse(status, headers, rest[:length]))
        rest = rest[length:]
    return responses


def assert_acceptable(resp: ParsedResponse, *, allowed: tuple[int, ...] = ()) -> None:
    """Not a 5xx (unless in *allowed*); a 4xx carries the JSON error shape."""
    assert resp.status < 500 or resp.status in allowed, (
        f"daemon answered {resp.status}: {resp.body[:300]!r}"
    )
    if 400 <= resp.status < 600 and resp.body:
        assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
        body = json.loads(resp.body)
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str), body
        assert body["error"], body
        assert isinstance(body.get("error_description"), str), body
        assert body["error_description"], body


def assert_raw_answer(data: bytes, *, head_only: bool = False) -> list[ParsedResponse]:
    """*data* is empty (closed without an answer) or acceptable responses only."""
    responses = parse_responses(data, head_only=head_only)
    for resp in responses:
        assert_acceptable(resp)
    return responses
