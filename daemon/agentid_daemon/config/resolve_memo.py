"""A bounded memo of ``Config.resolve`` results (the cache-hit fast path).

Kept apart from config.py so that the resolution rules there stay readable.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ..core.models import TokenRequest

# Resolved requests remembered per Config (see ResolveMemo).
RESOLVE_MEMO_SIZE = 256

MemoKey = tuple[tuple[str, Any], ...]


class ResolveMemo:
    """A small LRU of ``request fields -> TokenRequest`` for one :class:`Config`.

    Clients ask for the same few selections over and over; merging and
    validating them again on every request is most of a cache hit's cost.
    The memo belongs to one Config object: a reload builds a new Config, so
    it starts empty (and :meth:`Config.forget_resolved` drops the old one).
    Only successful resolutions are remembered.

    Keys never hold an OBO user token: its SHA-256 stands in for it. The
    TokenRequest values do hold it (memory only, like the token cache's own
    entries); the bound keeps that to at most ``maxsize`` requests.
    """

    def __init__(self, maxsize: int = RESOLVE_MEMO_SIZE) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[MemoKey, TokenRequest] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ResolveMemo({len(self._data)}/{self.maxsize})"

    def get(self, key: MemoKey) -> TokenRequest | None:
        found = self._data.get(key)
        if found is not None:
            self._data.move_to_end(key)
        return found

    def put(self, key: MemoKey, value: TokenRequest) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


def memo_key(fields: Mapping[str, Any], *, ignore: tuple[str, ...] = ()) -> MemoKey | None:
    """The memo key of request *fields*, or ``None`` when they are not memoisable.

    Keys keep the fields' order (a different order is only a memo miss);
    nulls and the keys in *ignore* (request options) are left out because
    resolve() ignores them.
    Anything but strings (and a list of strings for ``scope``) goes the slow
    way, where resolve() reports the error.
    """
    items: list[tuple[str, Any]] = []
    for key, value in fields.items():
        if value is None or key in ignore:
            continue
        if isinstance(value, str):
            if key == "user_token":
                digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
                items.append((key, ("sha256", digest)))
            else:
                items.append((key, value))
        elif key == "scope" and isinstance(value, list | tuple):
            if not all(isinstance(v, str) for v in value):
                return None
            items.append((key, ("list", *value)))
        else:
            return None
    return tuple(items)
