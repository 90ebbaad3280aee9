"""Unit tests for the HTTP plumbing handed to MSAL."""

from __future__ import annotations

from pathlib import Path

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


def test_pinned_verify_beats_requests_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = ProviderSession(verify="/mine.pem")
    settings = session.merge_environment_settings("https://login.example/t", {}, None, None, None)
    assert settings["verify"] == "/mine.pem"
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


def test_trust_store_adds_bundle_to_public_roots(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    store = TrustStore()
    combined = store.combined(str(bundle))
    data = Path(combined).read_bytes()
    assert data.rstrip().endswith(PEM.rstrip())
    assert Path(certifi.where()).read_bytes()[:200] in data
    assert store.combined(str(bundle)) == combined
    bundle.write_bytes(PEM + PEM)
    assert store.combined(str(bundle)) != combined


def test_trust_store_errors(tmp_path: Path) -> None:
    store = TrustStore()
    with pytest.raises(ConfigurationError, match="does not exist"):
        store.combined(str(tmp_path / "none.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        store.combined(str(bad))
