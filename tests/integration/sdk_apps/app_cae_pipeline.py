"""An azure-core pipeline under ``agentid-helper exec``, against a CAE resource.

azure-core's ``BearerTokenCredentialPolicy`` (with ``enable_cae=True``) sends
the token and, on a claims challenge, asks its credential again with the
claims. The credential speaks the managed identity endpoint's App Service
protocol (``IDENTITY_ENDPOINT``, ``X-IDENTITY-HEADER``) and passes the
challenge's claims as the ``claims`` query parameter. Each line on stdin
makes one more request; each result is printed as JSON (status, digest).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

URL, CA_FILE, SCOPE = sys.argv[1], sys.argv[2], sys.argv[3]


class ManagedIdentityEndpoint:
    """App Service's managed identity protocol (2019-08-01), plus ``claims``."""

    def get_token(self, *scopes: str, claims: str | None = None, **kwargs: Any) -> AccessToken:
        resource = scopes[0].removesuffix("/.default")
        query = {"resource": resource, "api-version": "2019-08-01"}
        if claims:
            query["claims"] = claims
        request = urllib.request.Request(
            os.environ["IDENTITY_ENDPOINT"] + "?" + urllib.parse.urlencode(query),
            headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            body = json.load(resp)
        return AccessToken(body["access_token"], int(body["expires_on"]))


pipeline = Pipeline(
    transport=RequestsTransport(connection_verify=CA_FILE),
    policies=[BearerTokenCredentialPolicy(ManagedIdentityEndpoint(), SCOPE, enable_cae=True)],
)


def call() -> None:
    response = pipeline.run(HttpRequest("GET", URL)).http_response
    print(json.dumps({"status": response.status_code, "body": response.json()}), flush=True)


with pipeline:
    call()
    for _line in sys.stdin:
        call()
