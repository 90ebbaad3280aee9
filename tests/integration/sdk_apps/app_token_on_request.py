"""An Azure SDK service that starts, says so, and asks for a token only when told.

It prints ``{"started": ...}`` at once (what it found in its environment),
then for each line on stdin gets a token with DefaultAzureCredential and
prints its report. A test can so start it while Entra is down and ask for a
token once Entra is back.
"""

from __future__ import annotations

import json
import os
import sys

from azure.identity import DefaultAzureCredential
from sdk_report import describe, emit

SCOPE = sys.argv[1] if len(sys.argv) > 1 else "https://graph.microsoft.com/.default"

print(
    json.dumps(
        {
            "started": True,
            "token_var": "AGENTID_ACCESS_TOKEN" in os.environ,
            "endpoint": bool(os.environ.get("IDENTITY_ENDPOINT")),
            "token_credentials": os.environ.get("AZURE_TOKEN_CREDENTIALS"),
        }
    ),
    flush=True,
)
for _line in sys.stdin:
    info = DefaultAzureCredential().get_token_info(SCOPE)
    emit(describe(info.token, info.expires_on))
