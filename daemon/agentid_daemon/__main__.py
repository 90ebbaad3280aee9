"""``python -m agentid_daemon``: the same as ``agentid-helperd``."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
