"""Every identity-provider failure names where it went: the address and the leg.

Real MSAL against the emulator over HTTPS: an outage (the connection closed
without an answer), a 5xx, a timeout, a refused connection, a TLS failure and
a managed identity endpoint that is not there; for each leg the message says
``identity provider https://127.0.0.1:<port> (<leg>)``, and never a path,
query or token.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from emulator_harness import Emulator

from agentid_daemon.core.errors import IdentityProviderError
from agentid_daemon.core.models import TOKEN_EXCHANGE_SCOPE, AgentRef, CredentialSpec
from agentid_daemon.idp.engine import Engine
from agentid_daemon.idp.managed_identity import ManagedIdentitySource
from agentid_daemon.idp.results import LEG_LABELS

SECRET_VAR = "AGENTID_TEST_ADDRESSES_SECRET"
GRAPH = ("https://graph.microsoft.com/.default",)
OTHER_MI_SOURCES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
)


@pytest.fixture
def emu(emulator_factory: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> Emulator:
    started = emulator_factory()
    monkeypatch.setenv(SECRET_VAR, started.blueprint_secret)
    return started


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(connect_timeout_s=5, read_timeout_s=0.5)
    try:
        yield eng
    finally:
        eng.close()


def agent_of(emu: Emulator, *, ca_bundle: str | None = "emulator") -> AgentRef:
    return AgentRef(
        authority_host=emu.authority_host,
        tenant_id=emu.tenant_id,
        blueprint_app_id=emu.blueprint_app_id,
        agent_identity_app_id=emu.agent_identity_app_id,
        credential=CredentialSpec("env", SECRET_VAR),
        ca_bundle=emu.ca_bundle if ca_bundle == "emulator" else ca_bundle,
    )


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def legs(emu: Emulator, engine: Engine) -> dict[str, Callable[[], Any]]:
    """Each leg, its inputs fetched (and authority discovery done) while all is well."""
    agent = agent_of(emu)
    t1 = engine.acquire_t1(agent).access_token
    t2 = engine.acquire_t2(agent, t1).access_token
    engine.acquire_autonomous_app(agent, t1, GRAPH)  # the agent's app: discovery done
    user_token = emu.user_token(emu.user_upn, audience=emu.blueprint_app_id)
    return {
        "t1": lambda: engine.acquire_t1(agent),
        "t2": lambda: engine.acquire_t2(agent, t1),
        "autonomous_app": lambda: engine.acquire_autonomous_app(agent, t1, GRAPH),
        "obo": lambda: engine.acquire_obo(agent, t1, user_token, GRAPH),
        "user_fic": lambda: engine.acquire_user_fic(
            agent, t1, t2, GRAPH, user_upn=emu.agent_user_upn, user_object_id=None
        ),
    }


def failure(call: Callable[[], Any]) -> IdentityProviderError:
    with pytest.raises(IdentityProviderError) as info:
        call()
    return info.value


def assert_names(err: IdentityProviderError, address: str, leg: str) -> None:
    text = str(err)
    assert f"identity provider {address} ({LEG_LABELS[leg]}" in text, text
    assert "/oauth2/" not in text and "eyJ" not in text  # the origin only, never a token
    assert err.leg == leg


def test_outage_names_the_address_and_the_leg(emu: Emulator, engine: Engine) -> None:
    calls = legs(emu, engine)
    emu.set_faults(outage=True)
    try:
        for leg, call in calls.items():
            err = failure(call)
            assert_names(err, emu.authority_host, leg)
            assert "unreachable: the connection was closed without an answer" in str(err)
            assert err.transient
    finally:
        emu.clear_faults()


def test_server_error_names_the_address(emu: Emulator, engine: Engine) -> None:
    calls = legs(emu, engine)
    emu.set_faults(status=503)
    try:
        for leg in ("t1", "autonomous_app", "user_fic"):
            err = failure(calls[leg])
            assert_names(err, emu.authority_host, leg)
            assert "HTTP 503" in str(err)
    finally:
        emu.clear_faults()


def test_timeout_names_the_address(emu: Emulator, engine: Engine) -> None:
    calls = legs(emu, engine)
    emu.set_faults(delay_s=3.0)
    try:
        for leg in ("t1", "obo"):
            err = failure(calls[leg])
            assert_names(err, emu.authority_host, leg)
            assert "unreachable: timed out" in str(err)
    finally:
        emu.clear_faults()


def test_refused_connection_at_discovery_names_the_address(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VAR, "x")
    address = f"https://127.0.0.1:{closed_port()}"
    agent = AgentRef(
        authority_host=address,
        tenant_id="e0e0e0e0-0000-4000-8000-000000000001",
        blueprint_app_id="e0e0e0e0-0000-4000-8000-0000000000b1",
        agent_identity_app_id="e0e0e0e0-0000-4000-8000-0000000000a1",
        credential=CredentialSpec("env", SECRET_VAR),
    )
    err = failure(lambda: engine.acquire_t1(agent))
    assert_names(err, address, "t1")
    assert "authority discovery) unreachable: connection refused" in str(err)


def test_tls_failure_names_the_address(emu: Emulator, engine: Engine) -> None:
    # Without the emulator's CA the certificate does not verify.
    err = failure(lambda: engine.acquire_t1(agent_of(emu, ca_bundle=None)))
    assert_names(err, emu.authority_host, "t1")
    assert "TLS verification failed" in str(err)


def test_managed_identity_endpoint_names_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTHER_MI_SOURCES:
        monkeypatch.delenv(name, raising=False)
    address = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", address)
    source = ManagedIdentitySource(connect_timeout_s=2, read_timeout_s=2)
    try:
        err = failure(lambda: source.acquire(CredentialSpec("managed_identity", "system")))
    finally:
        source.close()
    text = str(err)
    assert f"managed identity endpoint {address} ({LEG_LABELS['managed_identity']})" in text
    assert "unreachable: connection refused" in text
    assert "/metadata/" not in text and "api://" not in text
    assert TOKEN_EXCHANGE_SCOPE not in text
