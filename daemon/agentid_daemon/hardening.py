"""Process hardening the daemon applies to itself before it reads any secret.

The daemon's memory holds tokens and blueprint secrets, so it must never be
written to disk or read by a debugger of the same user:

- ``RLIMIT_CORE`` 0 (soft and hard, so nothing in the process can raise it
  again): a crash writes no core file, whatever ``ulimit -c`` the client or
  shell that started it had;
- ``prctl(PR_SET_DUMPABLE, 0)``: no core even through a ``core_pattern``
  pipe, no ``ptrace`` attach and no ``/proc/<pid>/mem`` for other processes of
  the same user (the kernel makes ``/proc/<pid>`` root-owned).

The systemd unit also sets ``LimitCORE=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

PR_SET_DUMPABLE = 4


def forbid_core_dumps() -> None:
    """Set RLIMIT_CORE to 0 and make the process non-dumpable; raise OSError if refused."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed (errno {errno})")
