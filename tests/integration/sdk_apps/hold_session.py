"""Prints the managed identity endpoint and header ``exec`` gave it, then waits.

It lives until its stdin closes, so a test can use its session while it runs
and check that the header is refused once it has exited.
"""

from __future__ import annotations

import json
import os
import sys

print(
    json.dumps(
        {
            "endpoint": os.environ.get("IDENTITY_ENDPOINT"),
            "header": os.environ.get("IDENTITY_HEADER"),
            "token_var": "AGENTID_ACCESS_TOKEN" in os.environ,
            "shadowing": sorted(
                k
                for k in (
                    "MSI_ENDPOINT",
                    "MSI_SECRET",
                    "IDENTITY_SERVER_THUMBPRINT",
                    "IMDS_ENDPOINT",
                )
                if k in os.environ
            ),
        }
    ),
    flush=True,
)
sys.stdin.read()
