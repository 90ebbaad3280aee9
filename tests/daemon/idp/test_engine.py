"""Engine tests against the local Entra emulator (real MSAL, real HTTPS)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import certifi
import jwt
import pytest
from emulator_harness import Emulator, start_emulator
from tooling import SUPPORT

from agentid_daemon.core.errors import ConfigurationError, IdentityProviderError
from agentid_daemon.core.models import TOKEN_EXCHANGE_SCOPE, AgentRef, CredentialSpec
from agentid_daemon.idp.engine import Engine

GRAPH = ("https://graph.microsoft.com/.default",)
SEED = SUPPORT / "engine_two_agents_seed.toml"
AGENT_A = "e0e0e0e0-0000-4000-8000-0000000000a1"
AGENT_B = "e0e0e0e0-0000-4000-8000-0000000000a2"
SECRET_VAR = "AGENTID_TEST_ENGINE_SECRET"


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A private emulator (faults!) with one blueprint and two agent identities."""
    emu = start_emulator(tmp_path_factory.mktemp("engine-emulator"), seed=SEED)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu(seeded: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    seeded.reset()
    monkeypatch.setenv(SECRET_VAR, seeded.blueprint_secret)
    return seeded


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(connect_timeout_s=5, read_timeout_s=10)
    try:
        yield eng
    finally:
        eng.close()


def ref(
    emu: Emulator,
    agent: str | None = None,
    spec: CredentialSpec | None = None,
    ca_bundle: str | None = "default",
) -> AgentRef:
    return AgentRef(
        authority_host=emu.authority_host,
        tenant_id=emu.tenant_id,
        blueprint_app_id=emu.blueprint_app_id,
        agent_identity_app_id=agent or emu.agent_identity_app_id,
        credential=spec or CredentialSpec("env", SECRET_VAR),
        ca_bundle=emu.ca_bundle if ca_bundle == "default" else ca_bundle,
    )


def by_leg(emu: Emulator) -> dict[str, int]:
    return emu.stats()["token_requests"]["by_leg"]


# ----------------------------------------------------------------- the legs


def test_t1_claims(emu: Emulator, engine: Engine) -> None:
    t1 = engine.acquire_t1(ref(emu))
    c = claims(t1.access_token)
    assert c["azp"] == emu.blueprint_app_id
    assert c["sub"].endswith("/" + emu.agent_identity_app_id)
    assert t1.expires_in > 0
    assert t1.scope == TOKEN_EXCHANGE_SCOPE
    assert t1.access_token not in repr(t1)


def test_autonomous_app_claims(emu: Emulator, engine: Engine) -> None:
    agent = ref(emu)
    t1 = engine.acquire_t1(agent).access_token
    token = engine.acquire_autonomous_app(agent, t1, GRAPH)
    c = claims(token.access_token)
    assert c["aud"] == "https://graph.microsoft.com"
    assert c["azp"] == c["sub"] == emu.agent_identity_app_id
    assert token.scope == GRAPH[0]


def test_obo_claims(emu: Emulator, engine: Engine) -> None:
    agent = ref(emu)
    t1 = engine.acquire_t1(agent).access_token
    user = emu.user_token(emu.user_upn, emu.blueprint_app_id)
    token = engine.acquire_obo(agent, t1, user, ("User.Read",))
    c = claims(token.access_token)
    assert c["aud"] == "https://graph.microsoft.com"
    assert c["azp"] == emu.agent_identity_app_id
    assert c["upn"] == emu.user_upn
    assert c["scp"] == "User.Read"
    assert token.scope == "User.Read"  # MSAL's openid/profile/offline_access are dropped


@pytest.mark.parametrize("by", ["upn", "object_id"])
def test_t2_and_user_fic_claims(emu: Emulator, engine: Engine, by: str) -> None:
    agent = ref(emu)
    t1 = engine.acquire_t1(agent).access_token
    t2 = engine.acquire_t2(agent, t1)
    assert claims(t2.access_token)["azp"] == emu.agent_identity_app_id
    kwargs = (
        {"user_upn": emu.agent_user_upn, "user_object_id": None}
        if by == "upn"
        else {"user_upn": None, "user_object_id": emu.agent_user_object_id}
    )
    token = engine.acquire_user_fic(agent, t1, t2.access_token, ("User.Read",), **kwargs)
    c = claims(token.access_token)
    assert c["oid"] == emu.agent_user_object_id
    assert c["azp"] == emu.agent_identity_app_id
    legs = {leg: n for leg, n in by_leg(emu).items() if n}
    assert legs == {"t1": 1, "t2": 1, "user_fic": 1}


def test_user_fic_needs_exactly_one_user(emu: Emulator, engine: Engine) -> None:
    with pytest.raises(ValueError):
        engine.acquire_user_fic(
            ref(emu), "a.b.c", "a.b.c", ("User.Read",), user_upn=None, user_object_id=None
        )


# ------------------------------------------------------- MSAL traps defused


def test_every_call_reaches_the_identity_provider(emu: Emulator, engine: Engine) -> None:
    agent = ref(emu)
    first = engine.acquire_t1(agent)
    second = engine.acquire_t1(agent)
    assert first.access_token != second.access_token
    t1 = second.access_token
    engine.acquire_autonomous_app(agent, t1, GRAPH)
    engine.acquire_autonomous_app(agent, t1, GRAPH)
    user = emu.user_token(emu.user_upn, emu.blueprint_app_id)
    engine.acquire_obo(agent, t1, user, ("User.Read",))
    engine.acquire_obo(agent, t1, user, ("User.Read",))
    legs = by_leg(emu)
    assert (legs["t1"], legs["autonomous_app"], legs["obo"]) == (2, 2, 2)


def test_429_carries_retry_after_and_does_not_block_a_sibling(
    emu: Emulator, engine: Engine
) -> None:
    emu.set_faults(status=429, retry_after_s=7, count=1)
    with pytest.raises(IdentityProviderError) as info:
        engine.acquire_t1(ref(emu, AGENT_A))
    err = info.value
    assert err.transient
    assert err.status == 429
    assert err.retry_after_s == 7
    assert err.leg == "t1"
    assert err.http_status == 503
    # Same blueprint, same URL, same scope: MSAL would replay the 429 for B.
    t1_b = engine.acquire_t1(ref(emu, AGENT_B))
    assert claims(t1_b.access_token)["sub"].endswith("/" + AGENT_B)
    # And A itself is not held back by MSAL's memory either: the daemon owns backoff.
    engine.acquire_t1(ref(emu, AGENT_A))
    assert by_leg(emu)["t1"] == 3


def test_identical_400_is_not_replayed(emu: Emulator, engine: Engine) -> None:
    stranger = "e0e0e0e0-0000-4000-8000-0000000000ff"  # not an agent of this blueprint
    for _ in range(2):
        with pytest.raises(IdentityProviderError) as info:
            engine.acquire_t1(ref(emu, stranger))
        assert not info.value.transient
    assert emu.stats()["token_requests"]["errors"] == 2


def test_bad_secret_is_permanent_with_hint_and_fixed_secret_works_at_once(
    emu: Emulator, engine: Engine, tmp_path: Path
) -> None:
    secret_file = tmp_path / "bp"
    secret_file.write_text("wrong-secret\n")
    secret_file.chmod(0o600)
    agent = ref(emu, spec=CredentialSpec("secret_file", str(secret_file)))
    with pytest.raises(IdentityProviderError) as info:
        engine.acquire_t1(agent)
    err = info.value
    assert not err.transient
    assert err.status in (400, 401)
    assert err.http_status == 502
    assert 7000215 in err.aadsts_codes
    assert err.correlation_id
    assert err.hint
    assert "secret set" in err.hint
    assert "wrong-secret" not in str(err)
    assert "wrong-secret" not in repr(err.to_json())
    secret_file.write_text(emu.blueprint_secret + "\n")
    engine.acquire_t1(agent)
    assert by_leg(emu)["t1"] == 2


def test_expired_or_bogus_t1_is_permanent(emu: Emulator, engine: Engine) -> None:
    bogus = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"
    with pytest.raises(IdentityProviderError) as info:
        engine.acquire_autonomous_app(ref(emu), bogus, GRAPH)
    assert not info.value.transient
    assert info.value.aadsts_codes
    assert bogus not in str(info.value)


def test_concurrent_agents_keep_their_own_t1(emu: Emulator, engine: Engine) -> None:
    agents = [ref(emu, AGENT_A), ref(emu, AGENT_B)] * 3
    t1s = {a.agent_identity_app_id: engine.acquire_t1(a).access_token for a in agents[:2]}

    def one(agent: AgentRef) -> str:
        token = engine.acquire_autonomous_app(agent, t1s[agent.agent_identity_app_id], GRAPH)
        return str(claims(token.access_token)["azp"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, agents))
    assert results == [a.agent_identity_app_id for a in agents]


@pytest.mark.parametrize("var", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_ca_bundle_wins_over_environment(
    emu: Emulator, engine: Engine, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, certifi.where())  # trusts public roots, not the emulator
    engine.acquire_t1(ref(emu))


def test_without_ca_bundle_tls_fails_clearly(
    emu: Emulator, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(IdentityProviderError, match="TLS verification failed") as info:
        engine.acquire_t1(ref(emu, ca_bundle=None))
    assert not info.value.transient


def test_missing_ca_bundle_is_a_configuration_error(emu: Emulator, engine: Engine) -> None:
    with pytest.raises(ConfigurationError, match="ca_bundle"):
        engine.acquire_t1(ref(emu, ca_bundle="/nonexistent/ca.pem"))


# ------------------------------------------------------ transient failures


def test_server_error_is_transient(emu: Emulator, engine: Engine) -> None:
    emu.set_faults(status=503, retry_after_s=3, count=1)
    with pytest.raises(IdentityProviderError) as info:
        engine.acquire_t1(ref(emu))
    assert info.value.transient
    assert info.value.status == 503
    assert info.value.retry_after_s == 3


def test_outage_is_transient(emu: Emulator, engine: Engine) -> None:
    agent = ref(emu)
    engine.acquire_t1(agent)  # discovery done: the outage hits the token request
    emu.set_faults(outage=True, count=2)  # the session retries a dropped connection once
    with pytest.raises(IdentityProviderError, match=r"unreachable") as info:
        engine.acquire_t1(agent)
    assert info.value.transient


def test_read_timeout_is_transient(emu: Emulator) -> None:
    eng = Engine(connect_timeout_s=5, read_timeout_s=0.3)
    try:
        agent = ref(emu)
        eng.acquire_t1(agent)
        emu.set_faults(delay_s=2.0, count=1)
        with pytest.raises(IdentityProviderError, match="timed out") as info:
            eng.acquire_t1(agent)
        assert info.value.transient
    finally:
        eng.close()
        emu.clear_faults()


def test_unreachable_authority_is_transient(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = AgentRef(
        authority_host="https://127.0.0.1:9",  # discard port: connection refused
        tenant_id="e0e0e0e0-0000-4000-8000-000000000001",
        blueprint_app_id="e0e0e0e0-0000-4000-8000-0000000000b1",
        agent_identity_app_id=AGENT_A,
        credential=CredentialSpec("env", SECRET_VAR),
    )
    monkeypatch.setenv(SECRET_VAR, "x")
    with pytest.raises(IdentityProviderError, match="authority discovery") as info:
        engine.acquire_t1(agent)
    assert info.value.transient


def test_unknown_tenant_fails_discovery_permanently(emu: Emulator, engine: Engine) -> None:
    agent = AgentRef(
        emu.authority_host,
        "f0f0f0f0-0000-4000-8000-000000000009",
        emu.blueprint_app_id,
        AGENT_A,
        CredentialSpec("env", SECRET_VAR),
        emu.ca_bundle,
    )
    with pytest.raises(IdentityProviderError) as info:
        engine.acquire_t1(agent)
    err = info.value
    assert not err.transient
    # Entra's own answer, not a bare "discovery failed (HTTP 400)".
    assert err.aadsts_codes == (90002,)
    assert err.status == 400
    assert "authority discovery at" in str(err)
    assert "AADSTS90002: Tenant " in str(err)
    assert "not found" in str(err)
    assert "Trace ID" not in str(err)
    assert err.hint
    assert "tenant_id" in err.hint


def test_unreadable_credential_is_a_configuration_error(emu: Emulator, engine: Engine) -> None:
    spec = CredentialSpec("secret_file", "/nonexistent/secret")
    with pytest.raises(ConfigurationError, match="/nonexistent/secret"):
        engine.acquire_t1(ref(emu, spec=spec))


# ------------------------------------- certificate and federated credentials


def test_certificate_credential(emulator: Emulator, engine: Engine) -> None:
    spec = CredentialSpec("certificate_file", emulator.info["blueprint_certificate_file"])
    agent = ref(emulator, spec=spec)
    t1 = engine.acquire_t1(agent)
    assert claims(t1.access_token)["azp"] == emulator.blueprint_app_id


def test_federated_token_credential(emulator: Emulator, engine: Engine) -> None:
    spec = CredentialSpec("federated_token_file", emulator.info["blueprint_federated_token_file"])
    t1 = engine.acquire_t1(ref(emulator, spec=spec))
    assert claims(t1.access_token)["sub"].endswith("/" + emulator.agent_identity_app_id)
