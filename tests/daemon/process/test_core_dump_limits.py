"""process/limits.py's forbid_core_dumps in a fresh interpreter: it changes a process for good."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import ctypes, json, resource, sys
from agentid_daemon.process import limits
limits.forbid_core_dumps()
PR_GET_DUMPABLE = 3
print(json.dumps({
    "core": resource.getrlimit(resource.RLIMIT_CORE),
    "dumpable": ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
    "finder": "ctypes.util" in sys.modules or "subprocess" in sys.modules,
}))
"""


def test_no_core_no_debugger_and_no_ldconfig_on_the_way() -> None:
    """RLIMIT_CORE 0/0 and not dumpable; libc is not looked up with
    ctypes.util.find_library, which spawns `ldconfig -p` on every daemon start."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert json.loads(out) == {"core": [0, 0], "dumpable": 0, "finder": False}
