"""The real daemon, binding identity sessions by ``pidfd_open`` + checks (run as a script).

Kernels before 6.5 have no ``SO_PEERPIDFD``; this runs the daemon as it runs
there, on any kernel, through ``main(use_so_peerpidfd=False)`` (the daemon's
own switch between the two paths of peer_process.py). Arguments as for
``agentid-helperd``.
"""

from __future__ import annotations

import sys

from agentid_daemon.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], use_so_peerpidfd=False))
