"""Helpers for tests of the emulator's Microsoft Graph (real HTTPS, pinned CA)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from emulator_harness import Emulator
from emulator_msal_helpers import GRAPH_DEFAULT, HTTP_TIMEOUT_S, PinnedSession, blueprint_app

GRAPH = "https://graph.microsoft.com"
# What an administrator signs in with to provision agent identities.
ADMIN_SCOPES = (
    f"{GRAPH}/AgentIdentityBlueprint.Create "
    f"{GRAPH}/AgentIdentityBlueprint.AddRemoveCreds.All "
    f"{GRAPH}/AgentIdentityBlueprintPrincipal.Create "
    f"{GRAPH}/AgentIdentity.Create.All "
    f"{GRAPH}/AgentIdentity.DeleteRestore.All "
    f"{GRAPH}/AgentIdUser.ReadWrite.All"
)


class GraphClient:
    """Calls ``{graph_endpoint}/beta/...`` with one bearer token."""

    def __init__(self, emu: Emulator, token: str | None) -> None:
        self.base = str(emu.info["graph_endpoint"])
        self.session = PinnedSession(emu.ca_bundle)
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        sent = {"OData-Version": "4.0", **(headers or {})}
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        return self.session.request(
            method,
            f"{self.base}/beta{path}",
            json=body,
            headers=sent,
            params=params,
            timeout=HTTP_TIMEOUT_S,
        )

    # -- provisioning steps ------------------------------------------------------
    def create_blueprint(self, name: str = "Provisioned blueprint") -> dict[str, Any]:
        resp = self.call(
            "POST",
            "/applications",
            {"@odata.type": "Microsoft.Graph.AgentIdentityBlueprint", "displayName": name},
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def create_principal(self, app_id: str) -> dict[str, Any]:
        resp = self.call(
            "POST", "/serviceprincipals/graph.agentIdentityBlueprintPrincipal", {"appId": app_id}
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def create_agent(self, blueprint_app_id: str, sponsor: str, name: str = "agent") -> Any:
        return self.call(
            "POST",
            "/serviceprincipals/Microsoft.Graph.AgentIdentity",
            agent_body(blueprint_app_id, sponsor, name),
        )


def agent_body(blueprint_app_id: str, sponsor: str, name: str = "agent") -> dict[str, Any]:
    return {
        "displayName": name,
        "agentIdentityBlueprintId": blueprint_app_id,
        "sponsors@odata.bind": [f"{GRAPH}/v1.0/users/{sponsor}"],
    }


def admin_client(emu: Emulator, scope: str = ADMIN_SCOPES, upn: str | None = None) -> GraphClient:
    """An administrator's delegated Graph token (``/_emulator/users/token`` with scope)."""
    body = {"upn": upn or emu.user_upn, "scope": scope}
    token = emu.admin("POST", "/_emulator/users/token", body)
    return GraphClient(emu, str(token["access_token"]))


def blueprint_client(
    emu: Emulator, client_id: str | None = None, secret: str | None = None
) -> GraphClient:
    """A blueprint's own app-only Graph token, acquired by MSAL (client credentials)."""
    if client_id is None:
        app = blueprint_app(emu)
    else:
        from emulator_msal_helpers import app as make_app

        app = make_app(emu, client_id, secret)
    result = app.acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result
    return GraphClient(emu, str(result["access_token"]))


def admin_token_file(
    emu: Emulator, directory: Path, scope: str = ADMIN_SCOPES, upn: str | None = None
) -> Path:
    """An administrator's delegated Graph token in a 0600 file, as
    ``az account get-access-token`` writes it (for ``init --graph-token-file``)."""
    body = {"upn": upn or emu.user_upn, "scope": scope}
    token = emu.admin("POST", "/_emulator/users/token", body)
    path = directory / "graph-token.json"
    path.write_text(json.dumps({"accessToken": token["access_token"], "tokenType": "Bearer"}))
    path.chmod(0o600)
    return path


def scripted_init(emu: Emulator) -> list[str]:
    """``init --non-interactive`` on the emulator (its tenant, authority, Graph, CA)."""
    return [
        "init",
        "--non-interactive",
        "--tenant-id",
        emu.tenant_id,
        "--authority-host",
        emu.authority_host,
        "--graph-endpoint",
        str(emu.info["graph_endpoint"]),
        "--ca-bundle",
        str(emu.ca_bundle),
    ]


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``check`` until it is true (replication lag), bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def graph_error(resp: requests.Response) -> dict[str, Any]:
    """The OData error of a Graph reply, after checking its shape."""
    body = resp.json()
    error = body["error"]
    assert set(error) == {"code", "message", "innerError"}, body
    assert error["innerError"]["request-id"] == resp.headers["request-id"]
    assert error["innerError"]["date"].endswith("Z")
    return dict(error)
