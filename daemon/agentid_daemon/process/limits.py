"""Limits the daemon sets on its own process at start-up: no core dumps, enough descriptors.

**No core, no debugger.** The daemon's memory holds tokens and blueprint
secrets, so it must never be written to disk or read by a debugger of the same
user:

- ``RLIMIT_CORE`` 0 (soft and hard, so nothing in the process can raise it
  again): a crash writes no core file, whatever ``ulimit -c`` the client or
  shell that started it had;
- ``prctl(PR_SET_DUMPABLE, 0)``: no core even through a ``core_pattern``
  pipe, no ``ptrace`` attach and no ``/proc/<pid>/mem`` for other processes of
  the same user (the kernel makes ``/proc/<pid>`` root-owned).

The systemd unit also sets ``LimitCORE=0``.

**How many clients at once.** Each connection costs one descriptor. The soft
``RLIMIT_NOFILE`` is often 1024 while the hard limit is far higher; the daemon
raises its soft limit to the hard one (capped: nothing needs a million) at
start-up and sizes ``Limits.max_connections`` from the result, keeping a
reserve for the daemon's own files (log, config, keyring, outbound HTTPS,
trio's wakeup pipe). Clients beyond it wait in the listen backlog
(``SOMAXCONN``), where a client's connect retries EAGAIN until its deadline.
"""

from __future__ import annotations

import ctypes
import resource

PR_SET_DUMPABLE = 4


def forbid_core_dumps() -> None:
    """Set RLIMIT_CORE to 0 and make the process non-dumpable; raise OSError if refused."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The process's own symbols (dlopen(NULL)) include libc's prctl. Not
    # ctypes.util.find_library("c"): it runs `ldconfig -p` in a subprocess,
    # milliseconds an autostarted daemon's first answer waits for.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed (errno {errno})")


#: Descriptors kept for the daemon itself (not for client connections).
RESERVED_FDS = 128
#: A soft limit above this buys nothing for a per-user daemon.
NOFILE_CAP = 65536
#: Never fewer slots than this, whatever the limit says.
MIN_CONNECTIONS = 32


def raise_nofile_limit(cap: int = NOFILE_CAP) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit; return the soft limit in force.

    A refusal (a seccomp filter, a container policy) is not an error: the
    daemon then sizes itself for the limit it has.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    return cap if soft == resource.RLIM_INFINITY else int(soft)


def max_connections_for(nofile: int) -> int:
    """Client connections that fit in ``nofile`` descriptors after the reserve."""
    return max(MIN_CONNECTIONS, nofile - RESERVED_FDS)
