"""An Azure SDK program that knows nothing of agentid-helper.

It uses azure-identity's ManagedIdentityCredential as it would on Azure App
Service. Each line on stdin asks for a token again, with a new credential
(azure-identity caches per instance), so a test can show that a long-running
process keeps getting tokens from the endpoint while it lives.
"""

from __future__ import annotations

import sys

from azure.identity import ManagedIdentityCredential
from sdk_report import describe, emit

SCOPE = sys.argv[1] if len(sys.argv) > 1 else "https://graph.microsoft.com/.default"


def fetch() -> None:
    credential = ManagedIdentityCredential()
    token = credential.get_token(SCOPE)
    emit(describe(token.token, token.expires_on))


fetch()
for _line in sys.stdin:
    fetch()
