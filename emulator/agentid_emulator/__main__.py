"""``python -m agentid_emulator``: same as ``agentid-helper-emulator``."""

import sys

from .cli import main

sys.exit(main())
