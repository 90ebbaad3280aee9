"""CA, server certificate and signing key in the state dir."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from agentid_emulator.certs import ensure_key_material, self_signed_certificate, thumbprints


def test_material_is_created_then_reused(tmp_path: Path) -> None:
    first = ensure_key_material(tmp_path / "s")
    server = x509.load_pem_x509_certificate(first.server_cert_path.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    for name in ("ca-key.pem", "server-key.pem", "signing-key.pem"):
        assert (tmp_path / "s" / name).stat().st_mode & 0o077 == 0
    # The server chain verifies against the CA, as a client's context would check it.
    ctx = ssl.create_default_context(cafile=str(first.ca_cert_path))
    assert ctx.cert_store_stats()["x509_ca"] == 1
    second = ensure_key_material(tmp_path / "s")
    assert second.ca_cert_path.read_bytes() == first.ca_cert_path.read_bytes()
    assert second.server_cert_path.read_bytes() == first.server_cert_path.read_bytes()
    assert "signing_key" not in repr(second)


def test_broken_material_is_regenerated(tmp_path: Path) -> None:
    old_ca = ensure_key_material(tmp_path).ca_cert_path.read_bytes()
    (tmp_path / "ca-key.pem").write_text("garbage")
    second = ensure_key_material(tmp_path)
    assert second.ca_cert_path.read_bytes() != old_ca
    server = x509.load_pem_x509_certificate(second.server_cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(second.ca_cert_path.read_bytes())
    assert server.issuer == ca.subject
    server.verify_directly_issued_by(ca)


def test_thumbprints_are_unpadded_base64url(tmp_path: Path) -> None:
    material = ensure_key_material(tmp_path)
    sha1, sha256 = thumbprints(self_signed_certificate(material.signing_key, "x"))
    assert len(sha1) == 27
    assert len(sha256) == 43
    assert "=" not in sha1 + sha256
    assert "+" not in sha1 + sha256
