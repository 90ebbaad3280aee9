"""``python -m agentid_client``: the same as ``agentid-helper``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
