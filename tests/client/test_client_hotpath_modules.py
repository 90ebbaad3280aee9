"""The exact set of modules the full client's `get` loads beyond a bare interpreter.

That is the hot path's fallback (agentid_client/hotpath.py hands anything but
the ordinary success case to it): a new import there costs every error,
``--format json`` and stale answer its share. The hot path's own modules are
pinned by tests/client/test_client_hotpath.py.

tests/client/test_client_hotpath.py forbids the heavy modules; this pins the whole set,
so any new import on the hot path (stdlib or ours) is a visible, reviewed change:
each one costs the cache hit its share of bench/bench_client.py's floor ratio.
The interpreter runs as the launcher starts it (`python -I -S`), with only the
client's directory on sys.path, and installs the hot-path bundle first as the
launcher does (agentid_client/hotbundle.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from client_fakes import TOKEN, FakeDaemon

import agentid_client

PROBE = """
import os, sys
fd = int(sys.argv[1])
sys.path.append(sys.argv[2])
before = set(sys.modules)
from agentid_client.hotbundle import install
install()
from agentid_client.cli import main
code = main(["get"])
os.write(fd, ",".join(sorted(set(sys.modules) - before)).encode())
sys.exit(code)
"""

# Beyond `python -I -S -c pass`'s own modules: `_socket`, `errno`, `_json` (for
# jsonlite) and `__future__` (the annotations import), then ours.
HOT_PATH_MODULES = frozenset(
    {
        "__future__",
        "_json",
        "_socket",
        "errno",
        "agentid_client",
        "agentid_client.cli",
        "agentid_client.cliargs",
        "agentid_client.commands",
        "agentid_client.contract",
        "agentid_client.daemon_api",
        "agentid_client.failures",
        "agentid_client.file_trust",
        "agentid_client.formats",
        "agentid_client.hotbundle",
        "agentid_client.hotpath",
        "agentid_client.jsonlite",
        "agentid_client.paths",
        "agentid_client.private_dir",
        "agentid_client.redact",
        "agentid_client.selection",
        "agentid_client.transport",
        "agentid_client.trust",
    }
)


def test_get_loads_exactly_the_pinned_modules(fake_daemon: FakeDaemon) -> None:
    client_dir = str(Path(agentid_client.__file__).resolve().parent.parent)
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", PROBE, str(write_fd), client_dir],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=30,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        added = set(filter(None, fh.read().split(",")))
    assert proc.returncode == 0, proc.stderr
    assert TOKEN in proc.stdout
    assert added == HOT_PATH_MODULES, (
        f"new on the hot path: {sorted(added - HOT_PATH_MODULES)}; "
        f"no longer loaded: {sorted(HOT_PATH_MODULES - added)}"
    )


def test_the_bundle_holds_the_pinned_client_modules() -> None:
    """hotbundle.HOT_MODULES is the pinned set's client modules (less the package,
    imported to find hotbundle, hotbundle itself and hotpath, which the launcher
    imported before it falls back): a module added to the full client's `get`
    without the bundle would cost a whole import again."""
    from agentid_client.hotbundle import HOT_MODULES

    pinned = {m for m in HOT_PATH_MODULES if m.startswith("agentid_client.")}
    assert set(HOT_MODULES) == pinned - {"agentid_client.hotbundle", "agentid_client.hotpath"}
    assert len(HOT_MODULES) == len(set(HOT_MODULES))
