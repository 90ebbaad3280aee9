"""The cache hit's modules as one file: one read and one unmarshal instead of a
path search, a stat, an open and a read per module.

Why: a warm `agentid-helper get` costs the interpreter's start plus the client's
imports plus one socket round trip (bench/RESULTS.md). The imports are ~15 small
modules whose cost is mostly the import system's per-module work (finding the
file, validating its .pyc), not their code. The launcher (client/launcher/
agentid-helper) calls :func:`install` before importing ``agentid_client.cli``;
from then on a finder at the front of ``sys.meta_path`` serves the modules in
:data:`HOT_MODULES` from the bundle's code objects, and every other import goes
the usual way.

The bundle lives in the package's ``__pycache__`` next to the .pyc files, under
the interpreter's cache tag (``hotpath.cpython-311.bundle``), so it has the same
trust as those: it is used only when owned by the package directory's owner and
writable by nobody else. It is keyed by the bytecode magic number and each
source's path, size and mtime (what a .pyc is validated against); a missing,
stale or unreadable bundle means the normal import, and is rebuilt on the spot
when the directory is writable (once per source change). Stdlib only, like the
whole client.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import CodeType, ModuleType
    from typing import Any

#: The client's modules that `get` loads (tests/client/test_client_hotpath_modules.py
#: checks this against what the hot path imports). The package itself is not
#: bundled: it is imported (normally) to find this module.
HOT_MODULES = (
    "agentid_client.cli",
    "agentid_client.cliargs",
    "agentid_client.commands",
    "agentid_client.contract",
    "agentid_client.daemon_api",
    "agentid_client.failures",
    "agentid_client.file_trust",
    "agentid_client.formats",
    "agentid_client.jsonlite",
    "agentid_client.paths",
    "agentid_client.private_dir",
    "agentid_client.redact",
    "agentid_client.selection",
    "agentid_client.transport",
    "agentid_client.trust",
)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_BOOTSTRAP: Any = sys.modules["_frozen_importlib"]
_EXTERNAL: Any = sys.modules["_frozen_importlib_external"]


def bundle_path() -> str:
    """Where this interpreter's bundle lives (None-free: a cache tag always exists
    on CPython; other implementations get a name that simply never matches)."""
    tag = sys.implementation.cache_tag or "none"
    return f"{_PACKAGE_DIR}/__pycache__/hotpath.{tag}.bundle"


def _source(name: str) -> str:
    return f"{_PACKAGE_DIR}/{name.rpartition('.')[2]}.py"


def _key(names: Sequence[str]) -> tuple[bytes, tuple[tuple[str, int, int], ...]]:
    """What the bundle is valid for; raises OSError when a source is missing."""
    sources = []
    for name in names:
        st = os.stat(_source(name))
        sources.append((name, st.st_size, st.st_mtime_ns))
    return bytes(_EXTERNAL.MAGIC_NUMBER), tuple(sources)


_Key = tuple[bytes, tuple[tuple[str, int, int], ...]]


class _BundleLoader:
    """Finder and loader for the bundled modules (the importlib protocols)."""

    def __init__(self, codes: dict[str, CodeType]) -> None:
        self._codes = codes

    def find_spec(self, name: str, path: object = None, target: object = None) -> Any:
        if name not in self._codes:
            return None
        spec = _BOOTSTRAP.ModuleSpec(name, self, origin=_source(name))
        spec.has_location = True
        return spec

    def create_module(self, spec: object) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        exec(self._codes[module.__name__], module.__dict__)


def _trusted(fd: int) -> bool:
    st = os.fstat(fd)
    return st.st_uid == os.stat(_PACKAGE_DIR).st_uid and not st.st_mode & 0o022


def _load(path: str, key: _Key) -> dict[str, CodeType] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not _trusted(fd):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            stored_key, codes = marshal.loads(fh.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        os.close(fd)
    if stored_key != key or not isinstance(codes, dict):
        return None
    return codes


def build(path: str, key: _Key) -> dict[str, CodeType]:
    """Compile the sources and write the bundle atomically (a reader sees the old
    file or the new one, never half of one)."""
    codes: dict[str, CodeType] = {}
    for name in HOT_MODULES:
        source = _source(name)
        with open(source, "rb") as fh:
            codes[name] = compile(fh.read(), source, "exec", dont_inherit=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(marshal.dumps((key, codes)))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    return codes


def install() -> bool:
    """Serve :data:`HOT_MODULES` from the bundle; False (and nothing changed) when
    there is no usable bundle and none can be written here."""
    path = bundle_path()
    try:
        key = _key(HOT_MODULES)
    except OSError:
        return False  # not a layout with sources next to this file (e.g. a zip)
    codes = _load(path, key)
    if codes is None:
        # where a write would fail (a system install run by a user, a read-only
        # __pycache__, `python -B`), every start would compile the sources again
        # for nothing: import them the normal way instead
        cache_dir = os.path.dirname(path)
        writable = os.access(cache_dir if os.path.isdir(cache_dir) else _PACKAGE_DIR, os.W_OK)
        if sys.dont_write_bytecode or not writable:
            return False
        try:
            codes = build(path, key)
        except (OSError, SyntaxError, ValueError):
            return False
    sys.meta_path.insert(0, _BundleLoader(codes))
    return True
