"""An Azure SDK program using AzureCliCredential (which runs `az account get-access-token`)."""

from __future__ import annotations

import sys

from azure.identity import AzureCliCredential
from sdk_report import describe, emit

SCOPE = sys.argv[1] if len(sys.argv) > 1 else "https://graph.microsoft.com/.default"

token = AzureCliCredential(process_timeout=60).get_token(SCOPE)
emit(describe(token.token, token.expires_on))
