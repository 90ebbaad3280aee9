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
        [sys.executable, "-c", code],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.strip() == "ValueError", done.stderr[-500:]


FALLBACK_PROBE = r"""
import json, sys
{setup}
from agentid_client import jsonlite
doc = {{"a": [1, 2.5, None, True, "é\n\u0001"], "b": {{"c": "x"}}, "n": -3}}
text = json.dumps(doc, indent=2, sort_keys=True)
assert jsonlite.dumps(doc, indent=2, sort_keys=True) == text, "dumps differs"
assert jsonlite.loads(text) == doc, "loads differs"
try:
    jsonlite.loads('"\x01"')
except ValueError:
    pass
else:
    raise SystemExit("a control character was accepted")
print(jsonlite.ACCELERATED)
"""


@pytest.mark.parametrize(
    "setup",
    [
        # No C accelerator at all (another interpreter, a stripped build).
        "sys.modules['_json'] = None",
        # An accelerator without the internals jsonlite uses.
        "import types; sys.modules['_json'] = types.ModuleType('_json')",
    ],
    ids=["no-_json", "_json-without-make_scanner"],
)
def test_falls_back_to_json_when_cpython_internals_are_missing(setup: str) -> None:
    import subprocess
    import sys

    code = FALLBACK_PROBE.format(setup=setup)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_uses_the_accelerator_on_cpython() -> None:
    assert jsonlite.ACCELERATED is True
