"""The hot-path bundle (agentid_client/hotbundle.py): it serves exactly the sources'
code, is rebuilt when a source changes, and is ignored when it cannot be trusted
or written, the import falling back to the normal one.

Each case runs on a copy of the package in tmp_path, in a fresh `python -I -S`
(the bundle's directory is fixed when hotbundle is imported), so the repository's
own __pycache__ is left alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agentid_client

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from agentid_client import hotbundle
installed = hotbundle.install()
import importlib
for _n in hotbundle.HOT_MODULES: importlib.import_module(_n)
import agentid_client.cli, agentid_client.transport
mods = {n: type(sys.modules[n].__loader__).__name__ for n in hotbundle.HOT_MODULES}
print(json.dumps({
    "installed": installed,
    "loaders": sorted(set(mods.values())),
    "marker": getattr(agentid_client.transport, "BUNDLE_MARKER", None),
    "cli_file": agentid_client.cli.__file__,
}))
"""


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    """A copy of the client package (sources only) in tmp_path; returns its parent."""
    src = Path(agentid_client.__file__).resolve().parent
    shutil.copytree(src, tmp_path / "agentid_client", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _probe(root: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def _bundle(root: Path) -> Path:
    return (
        root / "agentid_client" / "__pycache__" / f"hotpath.{sys.implementation.cache_tag}.bundle"
    )


def test_built_on_first_use_then_served(package: Path) -> None:
    first = _probe(package)
    assert first["installed"] is True
    assert _bundle(package).is_file()
    built = _bundle(package).stat().st_mtime_ns
    second = _probe(package)
    assert second["installed"] is True
    assert second["loaders"] == ["_BundleLoader"]
    assert second["cli_file"] == str(package / "agentid_client" / "cli.py")
    assert _bundle(package).stat().st_mtime_ns == built  # reused, not rebuilt


def test_a_changed_source_rebuilds_the_bundle(package: Path) -> None:
    _probe(package)
    transport = package / "agentid_client" / "transport.py"
    transport.write_text(transport.read_text() + "\nBUNDLE_MARKER = 'edited'\n")
    assert _probe(package)["marker"] == "edited"


def test_an_untrusted_bundle_is_not_used(package: Path) -> None:
    """A bundle others may write is ignored (and replaced) even when its key is current."""
    _probe(package)
    bundle = _bundle(package)
    bundle.chmod(0o664)
    assert _probe(package)["installed"] is True
    assert bundle.stat().st_mode & 0o777 == 0o644  # rewritten, not used


NO_WRITE = (
    "import os, sys; sys.path.insert(0, sys.argv[1]);"
    # the directory as an unprivileged user sees a system install (root ignores modes)
    "os.access = lambda *a, **k: False;"
    "from agentid_client import hotbundle;"
    "n = len(sys.meta_path); installed = hotbundle.install();"
    "import agentid_client.cli;"
    "print(installed, len(sys.meta_path) == n, type(agentid_client.cli.__loader__).__name__)"
)


@pytest.mark.parametrize("bundle", ["absent", "corrupt", "stale"])
def test_unusable_and_unwritable_means_the_normal_import(package: Path, bundle: str) -> None:
    """No usable bundle and a directory this user cannot write: install() changes
    nothing (no finder, no file) and the modules import the usual way."""
    path = _bundle(package)
    if bundle != "absent":
        _probe(package)
        if bundle == "corrupt":
            path.write_bytes(b"not marshal data")
        else:
            transport = package / "agentid_client" / "transport.py"
            transport.write_text(transport.read_text() + "\n")
    before = path.read_bytes() if path.exists() else None
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", NO_WRITE, str(package)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "SourceFileLoader"]
    assert (path.read_bytes() if path.exists() else None) == before


def test_bundle_code_matches_the_sources(package: Path) -> None:
    """Every bundled code object is the source compiled as the import would."""
    import marshal

    _probe(package)
    _key, codes = marshal.loads(_bundle(package).read_bytes())
    from agentid_client.hotbundle import HOT_MODULES

    assert sorted(codes) == sorted(HOT_MODULES)
    for name, code in codes.items():
        source = package / "agentid_client" / f"{name.rpartition('.')[2]}.py"
        assert code.co_filename == str(source)
        assert code == compile(source.read_bytes(), str(source), "exec", dont_inherit=True)


def test_python_b_builds_no_bundle(package: Path) -> None:
    """`python -B` (no bytecode writes) is respected: no bundle, the normal import."""
    proc = subprocess.run(
        [sys.executable, "-B", "-I", "-S", "-c", PROBE, str(package)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["installed"] is False
    assert not _bundle(package).exists()
