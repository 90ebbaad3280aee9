"""Key material of the emulator: a local CA, the HTTPS server certificate, the
token signing key, and helpers for certificate credentials (thumbprints).

Everything lives in the state directory and is reused across restarts while
valid, so a developer trusts the CA once (``ca.pem``). Private keys are written
0600.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "agentid-helper emulator CA"
_VALIDITY = dt.timedelta(days=825)
_RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class KeyMaterial:
    """Paths and objects the server needs."""

    ca_cert_path: Path
    server_cert_path: Path
    server_key_path: Path
    signing_key: rsa.RSAPrivateKey = field(repr=False)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def thumbprints(cert: x509.Certificate) -> tuple[str, str]:
    """(x5t, x5t#S256): base64url SHA-1 and SHA-256 of the DER certificate."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der).digest()), b64url(hashlib.sha256(der).digest())


def self_signed_certificate(
    key: rsa.RSAPrivateKey, common_name: str, days: int = 365
) -> x509.Certificate:
    """A self-signed certificate, as app registrations take for certificate credentials."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _load_key(path: Path) -> rsa.RSAPrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def _load_valid_cert(path: Path) -> x509.Certificate | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    if cert.not_valid_after_utc - _RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return None
    return cert


def _make_ca(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_server_cert(
    ca_key: rsa.RSAPrivateKey, ca: x509.Certificate, key: rsa.RSAPrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def ensure_key_material(state_dir: Path) -> KeyMaterial:
    """Load or create the CA, server certificate and signing key in ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {
        n: state_dir / n
        for n in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "signing-key.pem")
    }
    ca_key = _load_key(paths["ca-key.pem"])
    ca = _load_valid_cert(paths["ca.pem"]) if ca_key else None
    if ca_key is None or ca is None or ca.public_key() != ca_key.public_key():
        ca_key = new_key()
        ca = _make_ca(ca_key)
        _write_private(paths["ca-key.pem"], key_pem(ca_key))
        _write_public(paths["ca.pem"], cert_pem(ca))
        paths["server.pem"].unlink(missing_ok=True)
    server_key = _load_key(paths["server-key.pem"])
    server = _load_valid_cert(paths["server.pem"]) if server_key else None
    if server_key is None or server is None or server.issuer != ca.subject:
        server_key = new_key()
        server = _make_server_cert(ca_key, ca, server_key)
        _write_private(paths["server-key.pem"], key_pem(server_key))
        _write_public(paths["server.pem"], cert_pem(server))
    signing_key = _load_key(paths["signing-key.pem"])
    if signing_key is None:
        signing_key = new_key()
        _write_private(paths["signing-key.pem"], key_pem(signing_key))
    return KeyMaterial(paths["ca.pem"], paths["server.pem"], paths["server-key.pem"], signing_key)
