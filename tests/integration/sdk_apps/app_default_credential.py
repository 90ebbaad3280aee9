"""An Azure SDK program that knows nothing of agentid-helper: DefaultAzureCredential."""

from __future__ import annotations

import sys

from azure.identity import DefaultAzureCredential
from sdk_report import describe, emit

SCOPE = sys.argv[1] if len(sys.argv) > 1 else "https://graph.microsoft.com/.default"

credential = DefaultAzureCredential()
info = credential.get_token_info(SCOPE)
emit(describe(info.token, info.expires_on))
