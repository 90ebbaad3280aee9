"""docs/INTERNALS.md cannot drift from the code.

Its module map lists exactly the modules of the three packages (one line
each, nested under its package), every package's ``__init__`` docstring
names each of its modules, and every method signature INTERNALS quotes in a
``class X:`` block is the code's (inspect.signature of the class the block
names).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from tooling import ROOT

INTERNALS = ROOT / "docs" / "INTERNALS.md"
PACKAGES = {
    "daemon/agentid_daemon/": ROOT / "daemon" / "agentid_daemon",
    "client/agentid_client/": ROOT / "client" / "agentid_client",
    "emulator/agentid_emulator/": ROOT / "emulator" / "agentid_emulator",
}
#: The class each quoted ``class X:`` block of INTERNALS stands for.
QUOTED_CLASSES = {
    "Engine": "agentid_daemon.broker.seams",
    "TokenCache": "agentid_daemon.cache.token_cache",
    "Broker": "agentid_daemon.broker.broker",
}
_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z_][\w]*(?:\.py|/))(?:\s|$)")


def _text() -> str:
    return INTERNALS.read_text(encoding="utf-8")


def _layout_block() -> list[str]:
    text = _text()
    start = text.index("```\ndaemon/agentid_daemon/") + 4
    return text[start : text.index("```", start)].splitlines()


def mapped_modules() -> set[str]:
    """Every module the map lists, as a repository path."""
    found: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, directory path)
    for line in _layout_block():
        top = line.split()[0] if line.strip() else ""
        if top in PACKAGES:
            stack = [(-1, top)]
            continue
        match = _ENTRY.match(line)
        if not match or not stack or len(match["indent"]) < 2:
            continue
        indent = len(match["indent"])
        if indent % 2 or indent > 2 * len(stack) + 2:
            continue  # a continuation line of a description
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = stack[-1][1] + match["name"]
        if match["name"].endswith("/"):
            stack.append((indent, path))
        else:
            found.add(path)
    return found


def existing_modules() -> set[str]:
    return {
        prefix + str(path.relative_to(root))
        for prefix, root in PACKAGES.items()
        for path in root.rglob("*.py")
        if path.name != "__init__.py"
    }


def test_the_map_lists_exactly_the_modules() -> None:
    mapped, existing = mapped_modules(), existing_modules()
    assert not existing - mapped, f"modules missing from docs/INTERNALS.md: {existing - mapped}"
    assert not mapped - existing, f"INTERNALS maps modules that are gone: {mapped - existing}"


@pytest.mark.parametrize(
    "init", sorted(p for p in PACKAGES["daemon/agentid_daemon/"].glob("*/__init__.py"))
)
def test_each_package_docstring_names_its_modules(init: Path) -> None:
    text = init.read_text(encoding="utf-8")
    for module in sorted(init.parent.glob("*.py")):
        if module.name != "__init__.py":
            assert f":mod:`.{module.stem}`" in text, f"{init} does not name {module.stem}"


def test_the_daemon_docstring_names_its_sub_packages() -> None:
    root = PACKAGES["daemon/agentid_daemon/"]
    text = (root / "__init__.py").read_text(encoding="utf-8")
    for package in sorted(p.parent.name for p in root.glob("*/__init__.py")):
        assert f"``{package}``" in text, package


def format_signature(function: Any) -> str:
    """``[async ]def name(params) -> ret`` as INTERNALS writes it: the annotations
    as the source spells them, simple defaults by value, others as ``...``."""
    sig = inspect.signature(function)
    parts: list[str] = []
    star = False
    for param in sig.parameters.values():
        if param.kind is param.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = param.name
        if param.annotation is not param.empty:
            text += f": {param.annotation}"
        if param.default is not param.empty:
            simple = param.default is None or isinstance(param.default, (bool, int, float, str))
            value = repr(param.default) if simple else "..."
            text += f" = {value}" if param.annotation is not param.empty else f"={value}"
        parts.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    prefix = "async def" if inspect.iscoroutinefunction(function) else "def"
    return f"{prefix} {function.__name__}({', '.join(parts)}){ret}"


def quoted_signatures() -> list[tuple[str, str, str]]:
    """``(class, method, signature)`` for every ``def`` INTERNALS quotes in a class block."""
    quoted: list[tuple[str, str, str]] = []
    for block in re.findall(r"```python\n(.*?)```", _text(), flags=re.S):
        cls: str | None = None
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if m := re.match(r"^class (\w+)", line):
                cls = m[1]
            elif cls and re.match(r"^    (async )?def ", line):
                text = line.split("#")[0].strip()
                while text.count("(") > text.count(")") or text.endswith("->"):
                    i += 1
                    text += " " + lines[i].split("#")[0].strip()
                text = re.sub(r"\(\s+", "(", re.sub(r"\s+", " ", text))
                name = re.match(r"(?:async )?def (\w+)", text)
                assert name
                quoted.append((cls, name[1], text))
            i += 1
    return quoted


def test_internals_quotes_signatures() -> None:
    assert {cls for cls, _, _ in quoted_signatures()} == set(QUOTED_CLASSES)


@pytest.mark.parametrize(("cls", "method", "text"), quoted_signatures())
def test_quoted_signature_matches_the_code(cls: str, method: str, text: str) -> None:
    owner = getattr(importlib.import_module(QUOTED_CLASSES[cls]), cls)
    assert text == format_signature(getattr(owner, method))


def test_every_engine_leg_is_quoted() -> None:
    from agentid_daemon.broker.seams import Engine

    legs = {name for name in vars(Engine) if name.startswith("acquire_")}
    assert legs == {m for c, m, _ in quoted_signatures() if c == "Engine"}


def test_the_emulator_docstring_names_its_modules() -> None:
    """Its "Modules" paragraph lists every module by name."""
    root = PACKAGES["emulator/agentid_emulator/"]
    text = (root / "__init__.py").read_text(encoding="utf-8")
    listed = text[text.index("Modules\n-------") : text.index("Microsoft Graph (provisioning)")]
    for module in sorted(root.glob("*.py")):
        if module.name != "__init__.py":
            assert re.search(rf"\b{module.stem}\b", listed), f"{module.stem} not in the list"
