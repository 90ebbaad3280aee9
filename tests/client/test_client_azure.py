"""AgentIdentityCredential: azure-core's credential protocols over the daemon socket."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from azure.core.credentials import (
    AccessToken,
    AccessTokenInfo,
    SupportsTokenInfo,
    TokenCredential,
)
from azure.core.exceptions import ClientAuthenticationError
from client_fakes import TOKEN, FakeDaemon, error_body, token_body

from agentid_client.azure import AgentIdentityCredential


def test_implements_azure_core_protocols() -> None:
    credential = AgentIdentityCredential("bot")
    assert isinstance(credential, TokenCredential)
    assert isinstance(credential, SupportsTokenInfo)


def test_get_token(fake_daemon: FakeDaemon) -> None:
    body = token_body()
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: (200, body)
    with AgentIdentityCredential("bot") as credential:
        token = credential.get_token("https://vault.azure.net/.default")
    assert isinstance(token, AccessToken)
    assert token == AccessToken(TOKEN, body["expires_on"])
    (req,) = fake_daemon.token_requests
    assert req["json"] == {"profile": "bot", "scope": "https://vault.azure.net/.default"}


def test_get_token_info_carries_refresh_on(fake_daemon: FakeDaemon) -> None:
    body = token_body()
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: (200, body)
    info = AgentIdentityCredential().get_token_info("a/.default", "b/.default")
    assert isinstance(info, AccessTokenInfo)
    assert (info.token, info.expires_on, info.refresh_on, info.token_type) == (
        TOKEN,
        body["expires_on"],
        body["refresh_on"],
        "Bearer",
    )
    (req,) = fake_daemon.token_requests
    assert req["json"] == {"scope": "a/.default b/.default"}


def test_selection_claims_and_tenant_are_forwarded(fake_daemon: FakeDaemon) -> None:
    claims = '{"access_token":{"xms_cc":{"values":["cp1"]}}}'
    credential = AgentIdentityCredential(
        "bot", agent_identity_app_id="a1", mode="AutonomousUser", user_upn="u@x"
    )
    credential.get_token("s/.default", claims=claims, tenant_id="t2", enable_cae=True)
    credential.get_token_info("s/.default", options={"claims": claims})
    first, second = (r["json"] for r in fake_daemon.token_requests)
    assert first == {
        "profile": "bot",
        "agent_identity_app_id": "a1",
        "mode": "AutonomousUser",
        "user_upn": "u@x",
        "scope": "s/.default",
        "claims": claims,
        "tenant_id": "t2",
        "client_capabilities": ["cp1"],
    }  # enable_cae
    assert second["claims"] == claims
    assert "tenant_id" not in second
    assert "client_capabilities" not in second


def test_enable_cae_and_obo_session(fake_daemon: FakeDaemon) -> None:
    """azure-core's enable_cae declares cp1 (get_token and get_token_info alike);
    an OBO session is a selection keyword."""
    credential = AgentIdentityCredential("bot", mode="OBO", obo_session="job-1")
    credential.get_token_info("s/.default", options={"enable_cae": True})
    credential.get_token("s/.default")
    cae, plain = (r["json"] for r in fake_daemon.token_requests)
    assert cae == {
        "profile": "bot",
        "mode": "OBO",
        "obo_session": "job-1",
        "scope": "s/.default",
        "client_capabilities": ["cp1"],
    }
    assert "client_capabilities" not in plain


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="scope"):
        AgentIdentityCredential("bot", scope="x")  # type: ignore[arg-type]


def test_no_scope_is_a_value_error(fake_daemon: FakeDaemon) -> None:
    with pytest.raises(ValueError):
        AgentIdentityCredential().get_token()


def test_daemon_errors_become_client_authentication_error(fake_daemon: FakeDaemon) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: error_body(
        502,
        "identity_provider_error",
        "AADSTS7000215: Invalid client secret provided.",
        aadsts_codes=[7000215],
        correlation_id="c0ffee",
        hint="rotate the secret",
    )
    with pytest.raises(ClientAuthenticationError) as err:
        AgentIdentityCredential("bot").get_token("s/.default")
    message = str(err.value)
    assert "AADSTS7000215" in message
    assert "c0ffee" in message
    assert "rotate the secret" in message


def test_unreachable_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("AGENTID_HELPER_NO_AUTOSTART", "1")
    credential = AgentIdentityCredential(socket_path="/nonexistent/agentid.sock")
    with pytest.raises(ClientAuthenticationError, match="daemon unreachable"):
        credential.get_token("s/.default")


def test_repr_never_shows_a_user_token() -> None:
    credential = AgentIdentityCredential("bot", mode="OBO", user_token=TOKEN)
    assert TOKEN not in repr(credential)


def test_importing_it_does_not_import_azure_core() -> None:
    """The client stays stdlib-only until a token is asked for."""
    code = (
        "import sys, agentid_client.azure; "
        "print(sorted(m for m in sys.modules if m.startswith('azure')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
        check=True,
    ).stdout
    assert out.strip() == "[]"
