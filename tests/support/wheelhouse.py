"""Wheels of this venv's installed distributions: an offline package index.

No index is reachable from inside the tests' containers or fresh venvs, and
none is needed: the venv already holds every dependency, built for this
interpreter. Repacking an installed distribution (its files under
site-packages and a dist-info with a fresh RECORD; console scripts come back
from entry_points) gives a wheel pip installs as it would PyPI's, for any
Python of the same minor version and platform (Debian's python3 in the pod
test's images, a new user's venv in the quick start test).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(*roots: str) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need at run time, recursively."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(root), "") for root in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(req.name)
        if key in found:
            continue
        dist = metadata.distribution(req.name)
        found[key] = dist
        for line in dist.requires or []:
            for wanted in req.extras or {""}:
                todo.append((Requirement(line), wanted))
    return found


def repack(dist: metadata.Distribution, wheelhouse: Path) -> Path:
    """A wheel of an installed distribution, written into ``wheelhouse``."""
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    wheel = wheelhouse / f"{name}-{dist.version}-{tags[-1]}.whl"
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record: list[str] = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        info_dir = ""
        for file in dist.files or []:
            path = str(file)
            if path.startswith("..") or "__pycache__" in path:
                continue
            if ".dist-info/" in path:
                info_dir = path.split("/", 1)[0]
                if path.rsplit("/", 1)[1] in skip:
                    continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return wheel


def fill_wheelhouse(wheelhouse: Path, roots: Iterable[str], skip: Iterable[str] = ()) -> list[Path]:
    """Wheels of ``roots`` and everything they need, but the ``skip`` names
    (the checkout's own distributions, which are built, not repacked)."""
    skipped = {canonicalize_name(name) for name in skip}
    return [repack(dist, wheelhouse) for key, dist in closure(*roots).items() if key not in skipped]
