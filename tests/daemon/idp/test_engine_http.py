"""Unit tests for the HTTP plumbing handed to MSAL."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest

from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.idp.msal_http import (
    NeverStoreMapping,
    NoStoreTokenCache,
    ProviderSession,
    TrustStore,
)

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_never_store_mapping_forgets() -> None:
    m = NeverStoreMapping()
    m["k"] = 1
    assert "k" not in m
    assert m.get("k") is None
    assert len(m) == 0
    assert list(m) == []
    del m["k"]
    assert m.pop("k", None) is None


def test_no_store_token_cache_stays_empty() -> None:
    cache = NoStoreTokenCache()
    cache.add(
        {
            "client_id": "c",
            "scope": ["s"],
            "token_endpoint": "https://h/t/oauth2/v2.0/token",
            "response": {"access_token": "secret-at", "expires_in": 3600},
        }
    )
    assert list(cache.search(NoStoreTokenCache.CredentialType.ACCESS_TOKEN)) == []


def test_configured_trust_beats_requests_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = ProviderSession(trust=ssl.create_default_context())
    settings = session.merge_environment_settings("https://login.example/t", {}, None, None, None)
    assert settings["verify"] is True  # the session's own context decides, not a file
    assert settings["proxies"].get("https") == "http://proxy.example:3128"


def test_default_verify_leaves_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")
    session = ProviderSession()
    settings = session.merge_environment_settings("https://login.example/t", {}, None, None, None)
    assert settings["verify"] == "/elsewhere.pem"


def test_last_response_starts_empty() -> None:
    session = ProviderSession()
    assert session.last is None
    session.reset_last()
    assert session.last is None


def test_trust_store_adds_bundle_to_the_system_roots(tmp_path: Path) -> None:
    """The configured CA is extra trust: a public root (the system's) still verifies."""
    emulator_ca = tmp_path / "ca.pem"
    emulator_ca.write_bytes(ssl.DER_cert_to_PEM_cert(_some_public_root()).encode())
    store = TrustStore()
    context = store.context(str(emulator_ca))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert store.context(str(emulator_ca)) is context  # built once
    emulator_ca.write_bytes(emulator_ca.read_bytes() * 2)
    assert store.context(str(emulator_ca)) is not context  # a changed file: a new context
    system = ssl.get_default_verify_paths()
    assert system.capath and os.path.isdir(system.capath), "this test wants a CA directory"
    # the system's hashed directory is looked up lazily: nothing parsed up front but the bundle
    assert context.cert_store_stats()["x509_ca"] == 1


def _some_public_root() -> bytes:
    """One root certificate of the system's store (DER)."""
    return ssl.create_default_context().get_ca_certs(binary_form=True)[0]


def test_trust_store_errors(tmp_path: Path) -> None:
    store = TrustStore()
    with pytest.raises(ConfigurationError, match="does not exist"):
        store.context(str(tmp_path / "none.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        store.context(str(bad))
    broken = tmp_path / "broken.pem"
    broken.write_bytes(PEM)  # the markers, but no certificate inside
    with pytest.raises(ConfigurationError, match="OpenSSL cannot read"):
        store.context(str(broken))


def test_connections_share_one_context_and_parse_no_ca_file(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the emulator over real HTTPS, two new connections: both verify with
    the store's context, and nothing loads a CA file into it per connection (urllib3
    would, for requests' ``verify=PATH`` or certifi's bundle: ~25-55 ms each)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # must not be added either
    context = TrustStore().context(emulator.ca_bundle)
    before = context.cert_store_stats()["x509_ca"]
    url = f"{emulator.authority}/v2.0/.well-known/openid-configuration"
    for _ in range(2):
        with ProviderSession(trust=context) as session:
            assert session.get(url).status_code == 200
    assert context.cert_store_stats()["x509_ca"] == before
