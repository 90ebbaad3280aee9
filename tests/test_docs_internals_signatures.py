"""docs/INTERNALS.md quotes the Engine's methods: the quote is the code's signature."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from agentid_daemon.idp.engine import Engine

INTERNALS = Path(__file__).resolve().parents[1] / "docs" / "INTERNALS.md"


def quoted_engine_methods() -> dict[str, ast.arguments]:
    text = INTERNALS.read_text()
    block = re.search(r"### engine[^\n]*\n```python\n(.*?)```", text, re.S)
    assert block, "docs/INTERNALS.md has no engine block"
    # The quote is a class body of bare signatures: give each a body to parse it.
    source = re.sub(r"\) -> (\w+)(\s*(#.*)?)$", r") -> \1: ...", block.group(1), flags=re.M)
    tree = ast.parse(source)
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    return {f.name: f.args for f in cls.body if isinstance(f, ast.FunctionDef)}


def test_every_public_engine_method_is_quoted_with_its_parameters() -> None:
    quoted = quoted_engine_methods()
    public = {
        name
        for name, member in inspect.getmembers(Engine, inspect.isfunction)
        if name.startswith("acquire")
    }
    assert set(quoted) == public
    for name, args in quoted.items():
        params = list(inspect.signature(getattr(Engine, name)).parameters.values())
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        assert [a.arg for a in args.args] == positional, name
        assert [a.arg for a in args.kwonlyargs] == keyword, name
