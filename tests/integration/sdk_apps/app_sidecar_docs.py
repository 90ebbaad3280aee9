"""An app written against Microsoft's Agent ID sidecar docs (learn.microsoft.com/entra/msidweb/
agent-id-sdk/): plain ``requests`` calls to the sidecar on localhost, nothing of this project.

argv: SIDECAR_URL AGENT_IDENTITY AGENT_USERNAME USER_TOKEN; prints one JSON report.
"""

from __future__ import annotations

import json
import sys

import requests

SIDECAR, AGENT, AGENT_USER, USER_TOKEN = sys.argv[1:5]


def authorization_header(path: str, **params: str) -> str:
    headers = {"Authorization": f"Bearer {USER_TOKEN}"} if path == "AuthorizationHeader" else {}
    r = requests.get(f"{SIDECAR}/{path}/Graph", params=params, headers=headers, timeout=30)
    r.raise_for_status()
    return str(r.json()["authorizationHeader"])


report: dict[str, object] = {}
report["healthz"] = requests.get(f"{SIDECAR}/healthz", timeout=10).status_code
report["autonomous"] = authorization_header(
    "AuthorizationHeaderUnauthenticated", AgentIdentity=AGENT
)[:7]
report["agent_user"] = authorization_header(
    "AuthorizationHeaderUnauthenticated", AgentIdentity=AGENT, AgentUsername=AGENT_USER
)[:7]
report["obo"] = authorization_header("AuthorizationHeader", AgentIdentity=AGENT)[:7]
r = requests.post(
    f"{SIDECAR}/DownstreamApiUnauthenticated/Graph", params={"AgentIdentity": AGENT}, timeout=30
)
r.raise_for_status()
downstream = r.json()
report["downstream_status"] = downstream["statusCode"]
report["downstream_users"] = [u["displayName"] for u in json.loads(downstream["content"])["value"]]
r = requests.get(
    f"{SIDECAR}/Validate", headers={"Authorization": f"Bearer {USER_TOKEN}"}, timeout=30
)
r.raise_for_status()
report["validate"] = {k: r.json()[k] for k in ("protocol",)}
report["validate_upn"] = r.json()["claims"].get("upn")
print(json.dumps(report))
