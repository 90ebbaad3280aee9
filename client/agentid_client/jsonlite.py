"""JSON for the hot path without importing the ``json`` package.

``import json`` pulls in ``re`` and ``enum``: about 10 ms, two thirds of a
bare interpreter start, on every kubectl/git/script call. The C accelerator
``_json`` (what ``json`` itself uses) has no such imports, so decoding uses
its scanner directly and encoding is a small recursive writer over its
string escaper. Output matches ``json.dumps(obj, indent=..., sort_keys=...)``
for the types the client handles (dict, list, str, int, float, bool, None);
``tests/client/test_client_jsonlite.py`` checks that against ``json``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Scanner = Callable[[str, int], tuple[Any, int]]

_WS = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_CONSTANTS.__getitem__)
    memo: dict[str, str] = {}


def _accelerated() -> tuple[Scanner, Callable[[str], str], bool]:
    """The C scanner and escaper, or the ``json`` package's when they are missing.

    ``_json`` is a CPython implementation detail: another interpreter (or a
    build without the accelerator) may lack it or its ``make_scanner``. The
    fallback is slower to import but decodes and encodes the same.
    """
    try:
        import _json

        # typeshed types make_scanner's argument as make_scanner itself; it
        # reads a JSONDecoder's attributes, which _Context provides.
        scan: Scanner = _json.make_scanner(_Context())  # type: ignore[arg-type]
        return scan, _json.encode_basestring_ascii, True
    except (ImportError, AttributeError, TypeError):
        import json
        import json.encoder
        import json.scanner

        fallback: Scanner = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
        return fallback, json.encoder.encode_basestring_ascii, False


# ACCELERATED tells tests (and the curious) which path this interpreter takes.
_scan, _escape, ACCELERATED = _accelerated()


MAX_DEPTH = 64


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the C scanner recurses into it.

    ``_json``'s scanner recurses per level: thousands of ``[`` exhaust the C
    stack guard (RecursionError, or SystemError on some builds). Nothing the
    client decodes nests more than a few levels, so the fast path is a count.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def loads(data: str | bytes) -> Any:
    """Decode one JSON document; raise ValueError when it is not valid JSON."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    _check_depth(text)
    idx = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, idx)
    except StopIteration:
        raise ValueError(f"expecting a JSON value at character {idx}") from None
    except SystemError:
        # _json reports a bad string (control character, bad escape) by raising
        # json.decoder.JSONDecodeError, which it looks up in sys.modules only:
        # without `import json` (avoided on purpose) it fails with no exception
        # set, and the interpreter turns that into SystemError.
        raise ValueError("invalid JSON string (control character or bad escape)") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    rest = text[end:]
    if rest.strip(_WS):
        raise ValueError(f"extra data at character {end}")
    return value


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _encode(obj: Any, out: list[str], indent: int | None, level: int, sort_keys: bool) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_escape(obj))
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        out.append(_float(obj))
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        out.append("[")
        sep, inner, closing = _layout(indent, level)
        for i, item in enumerate(obj):
            out.append(inner if i == 0 else sep)
            _encode(item, out, indent, level + 1, sort_keys)
        out.append(closing + "]")
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        out.append("{")
        sep, inner, closing = _layout(indent, level)
        items = sorted(obj.items()) if sort_keys else obj.items()
        for i, (key, value) in enumerate(items):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            out.append(inner if i == 0 else sep)
            out.append(_escape(key) + (": " if indent is not None else ":"))
            _encode(value, out, indent, level + 1, sort_keys)
        out.append(closing + "}")
    else:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _layout(indent: int | None, level: int) -> tuple[str, str, str]:
    if indent is None:
        return ",", "", ""
    inner = "\n" + " " * (indent * (level + 1))
    return "," + inner, inner, "\n" + " " * (indent * level)


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Encode ``obj``: compact (``,``/``:``) without indent, else like json.dumps(indent=N)."""
    out: list[str] = []
    _encode(obj, out, indent, 0, sort_keys)
    return "".join(out)
