"""Helpers for tests where MSAL is the client of the emulator (over real HTTPS)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msal
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentid_emulator.jwt_tokens import TokenIssuer

TX_SCOPE = "api://AzureADTokenExchange/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
HTTP_TIMEOUT_S = 15


class PinnedSession(requests.Session):
    """Trusts exactly ``ca_bundle``, whatever REQUESTS_CA_BUNDLE says, and records
    the status and headers of the last response (to assert Entra's HTTP status)."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle
        self.verify = ca_bundle
        self.last: requests.Response | None = None
        self._lock = threading.Lock()

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.ca_bundle
        return settings

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        resp = super().request(method, url, *args, **kwargs)
        with self._lock:
            self.last = resp
        return resp


def app(
    emu: Any, client_id: str, credential: Any, session: PinnedSession | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=emu.authority,
        instance_discovery=False,
        http_client=session or PinnedSession(emu.ca_bundle),
    )


def blueprint_app(
    emu: Any, session: PinnedSession | None = None, secret: str | None = None
) -> msal.ConfidentialClientApplication:
    return app(
        emu, emu.blueprint_app_id, emu.blueprint_secret if secret is None else secret, session
    )


def agent_app(
    emu: Any, assertion: str, session: PinnedSession | None = None, agent_id: str | None = None
) -> msal.ConfidentialClientApplication:
    return app(
        emu, agent_id or emu.agent_identity_app_id, {"client_assertion": lambda: assertion}, session
    )


def t1(emu: Any) -> str:
    result = blueprint_app(emu).acquire_token_for_client(
        [TX_SCOPE], fmi_path=emu.agent_identity_app_id
    )
    assert "access_token" in result, result
    return str(result["access_token"])


def t2(emu: Any, t1_token: str) -> str:
    result = agent_app(emu, t1_token).acquire_token_for_client([TX_SCOPE])
    assert "access_token" in result, result
    return str(result["access_token"])


def emulator_issuer(emu: Any) -> TokenIssuer:
    """The emulator's own signer (from its state dir), to forge edge-case tokens."""
    key = serialization.load_pem_private_key(
        (Path(emu.state_dir) / "signing-key.pem").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return TokenIssuer(emu.authority_host, key)


def aadsts(result: dict[str, Any]) -> int:
    return int(result["error_codes"][0])
