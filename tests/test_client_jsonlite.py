"""jsonlite agrees with the json package on the values the client handles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentid_client import jsonlite

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_dumps_matches_json(value: Any) -> None:
    assert jsonlite.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert jsonlite.dumps(value, indent=2, sort_keys=True) == json.dumps(
        value, indent=2, sort_keys=True
    )


@given(values)
def test_loads_roundtrip(value: Any) -> None:
    assert jsonlite.loads(json.dumps(value)) == value
    assert jsonlite.loads(json.dumps(value, indent=1).encode()) == value


@pytest.mark.parametrize("bad", ["", "{", "[1,]", "{} x", "nul", '{"a":1}}', b"\xff"])
def test_loads_rejects_invalid(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsonlite.loads(bad)


def test_dumps_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        jsonlite.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsonlite.dumps({1: "a"})


@pytest.mark.parametrize("text", ['"\x01"', '["a\x01"]', '"\\x"', "[" * 5000, "{" * 100])
def test_bad_strings_and_deep_nesting_are_value_errors_in_a_fresh_process(text: str) -> None:
    """In a fresh interpreter (json.decoder never imported) bad input is a ValueError."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from agentid_client import jsonlite\n"
        "try:\n"
        "    jsonlite.loads(sys.stdin.read())\n"
        "except ValueError:\n"
        "    print('ValueError')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=30,
        check=False,
    )
    assert done.stdout.strip() == "ValueError", done.stderr[-500:]
