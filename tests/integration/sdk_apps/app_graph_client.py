"""A Microsoft Graph SDK program (msgraph-sdk) that knows nothing of agentid-helper.

It authenticates with azure-identity's async ManagedIdentityCredential. The
only non-default settings point the client at the local Graph stub instead
of graph.microsoft.com: its base URL, its CA, and that host as allowed for
tokens (the SDK only sends tokens to Microsoft's Graph hosts by default).

usage: app_graph_client.py BASE_URL CA_FILE
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from urllib.parse import urlsplit

import httpx
from azure.identity.aio import ManagedIdentityCredential
from msgraph import GraphServiceClient
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph_core import GraphClientFactory
from msgraph_core.authentication import AzureIdentityAuthenticationProvider


async def main(base_url: str, ca_file: str) -> None:
    credential = ManagedIdentityCredential()
    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=[str(urlsplit(base_url).hostname)],
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca_file))
    )
    adapter = GraphRequestAdapter(auth, http)
    adapter.base_url = base_url.rstrip("/") + "/v1.0"
    client = GraphServiceClient(request_adapter=adapter)
    try:
        users = await client.users.get()
        names = [u.display_name for u in (users.value if users and users.value else [])]
        print(json.dumps({"users": names}), flush=True)
    finally:
        await credential.close()
        await http.aclose()


asyncio.run(main(sys.argv[1], sys.argv[2]))
