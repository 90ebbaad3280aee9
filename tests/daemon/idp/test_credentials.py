"""Tests for reading blueprint credentials into MSAL's client_credential."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from memory_keyring import MemoryKeyring
from private_umask import private_umask  # noqa: F401  (the fixture, used by pytestmark)

from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.core.models import CredentialSpec
from agentid_daemon.idp.credentials import (
    KEYRING_SERVICE,
    credential_fingerprint,
    load_client_credential,
)

pytestmark = pytest.mark.usefixtures("private_umask")

B = "22222222-2222-2222-2222-222222222222"
SECRET = "s3cr3t-Value~x"


class FailingKeyring(MemoryKeyring):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def get_password(self, service: str, username: str) -> str | None:
        raise self.exc


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def test_keyring_secret(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password(KEYRING_SERVICE, B, SECRET)
    assert load_client_credential(CredentialSpec("keyring", B)) == SECRET


def test_keyring_missing_entry_hints_secret_set(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(ConfigurationError, match="no blueprint secret in the keyring") as info:
        load_client_credential(CredentialSpec("keyring", B))
    assert info.value.hint
    assert f"secret set --blueprint-app-id {B}" in info.value.hint


@pytest.mark.parametrize(
    ("exc", "match"),
    [
        (keyring.errors.NoKeyringError("none"), "no keyring backend"),
        (keyring.errors.KeyringLocked("locked"), "locked"),
        (keyring.errors.KeyringError("boom"), "keyring error"),
        # PYTHON_KEYRING_BACKEND naming a module the daemon cannot import.
        (
            ModuleNotFoundError("No module named 'gone'", name="gone"),
            r"backend cannot be loaded \(gone\)",
        ),
    ],
)
def test_keyring_failures(exc: Exception, match: str) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(FailingKeyring(exc))
    try:
        with pytest.raises(ConfigurationError, match=match):
            load_client_credential(CredentialSpec("keyring", B))
    finally:
        keyring.set_keyring(previous)


def test_secret_file_strips_trailing_newline_only(tmp_path: Path) -> None:
    path = tmp_path / "bp"
    path.write_text(f" {SECRET}\n")
    assert load_client_credential(CredentialSpec("secret_file", str(path))) == f" {SECRET}"


def test_secret_file_errors_name_the_file_not_the_value(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigurationError, match=f"{missing} does not exist"):
        load_client_credential(CredentialSpec("secret_file", str(missing)))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        load_client_credential(CredentialSpec("secret_file", str(empty)))
    with pytest.raises(ConfigurationError, match="is a directory"):
        load_client_credential(CredentialSpec("secret_file", str(tmp_path)))


def test_secret_file_permission_denied(tmp_path: Path) -> None:
    """A secret file the daemon's user cannot read: a clear error, never the value.

    Root reads any file, so as root (CI) the read happens in a forked child that
    drops to uid 65534 first; the file stays root's with mode 0600.
    """
    path = tmp_path / "bp"
    path.write_text(SECRET)
    path.chmod(0o600 if os.geteuid() == 0 else 0)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                load_client_credential(CredentialSpec("secret_file", str(path)))
                message = "read succeeded"
            except ConfigurationError as exc:
                message = str(exc)
            os.write(write_end, message.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "permission denied" in message
    assert str(path) in message
    assert SECRET not in message


def test_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BP_SECRET", SECRET)
    assert load_client_credential(CredentialSpec("env", "BP_SECRET")) == SECRET
    monkeypatch.setenv("BP_SECRET", "")
    with pytest.raises(ConfigurationError, match=r"BP_SECRET.*empty"):
        load_client_credential(CredentialSpec("env", "BP_SECRET"))
    monkeypatch.delenv("BP_SECRET")
    with pytest.raises(ConfigurationError, match=r"BP_SECRET.*not set"):
        load_client_credential(CredentialSpec("env", "BP_SECRET"))


def test_federated_token_file_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    cred = load_client_credential(CredentialSpec("federated_token_file", str(path)))
    assert isinstance(cred, dict)
    assertion = cred["client_assertion"]
    assert assertion() == "first"
    path.write_text("second")
    assert assertion() == "second"
    assert "second" not in repr(assertion)


def test_federated_token_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="federated token file"):
        load_client_credential(CredentialSpec("federated_token_file", str(tmp_path / "x")))


def _cert_pem(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blueprint")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_certificate_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "bp.pem"
    cert_pem = _cert_pem(rsa_key)
    path.write_bytes(_key_pem(rsa_key) + cert_pem)
    cred = load_client_credential(CredentialSpec("certificate_file", str(path)))
    assert isinstance(cred, dict)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cred["thumbprint_sha1"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert cred["thumbprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex().upper()
    assert "PRIVATE KEY" in cred["private_key"]
    assert cred["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_certificate_file_errors(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "bp.pem"
    path.write_bytes(_cert_pem(rsa_key))
    with pytest.raises(ConfigurationError, match="no PEM private key"):
        load_client_credential(CredentialSpec("certificate_file", str(path)))
    path.write_bytes(_key_pem(rsa_key))
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        load_client_credential(CredentialSpec("certificate_file", str(path)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path.write_bytes(_key_pem(rsa_key) + _cert_pem(other))
    with pytest.raises(ConfigurationError, match="does not match"):
        load_client_credential(CredentialSpec("certificate_file", str(path)))
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    path.write_bytes(encrypted + _cert_pem(rsa_key))
    with pytest.raises(ConfigurationError, match="encrypted"):
        load_client_credential(CredentialSpec("certificate_file", str(path)))


def test_fingerprint_changes_with_secret_and_hides_it() -> None:
    a, b = credential_fingerprint("one"), credential_fingerprint("two")
    assert a != b
    assert "one" not in a
    assert credential_fingerprint("one") == a


def test_secret_file_under_unset_variable_fails_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    spec = CredentialSpec("secret_file", "$CREDENTIALS_DIRECTORY/bp")
    with pytest.raises(ConfigurationError, match="unset environment variable CREDENTIAL"):
        load_client_credential(spec)
    (tmp_path / "bp").write_text(SECRET + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_client_credential(spec) == SECRET


def test_workload_identity_reads_azure_federated_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(path))
    cred = load_client_credential(CredentialSpec("workload_identity", ""))
    assert isinstance(cred, dict)
    assert cred["client_assertion"]() == "first"
    path.write_text("rotated")
    assert cred["client_assertion"]() == "rotated"


def test_workload_identity_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_FEDERATED_TOKEN_FILE"):
        load_client_credential(CredentialSpec("workload_identity", ""))


def test_managed_identity_is_not_read_from_a_source() -> None:
    with pytest.raises(ConfigurationError):
        load_client_credential(CredentialSpec("managed_identity", "system"))


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("system", {"ManagedIdentityIdType": "SystemAssigned", "Id": None}),
        ("client_id=c", {"ManagedIdentityIdType": "ClientId", "Id": "c"}),
        ("object_id=o", {"ManagedIdentityIdType": "ObjectId", "Id": "o"}),
        (
            "resource_id=/subscriptions/r",
            {"ManagedIdentityIdType": "ResourceId", "Id": "/subscriptions/r"},
        ),
    ],
)
def test_msal_identity(location: str, expected: dict[str, object]) -> None:
    from agentid_daemon.idp.managed_identity import msal_identity

    assert dict(msal_identity(location)) == expected


def test_msal_identity_refuses_garbage() -> None:
    from agentid_daemon.idp.managed_identity import msal_identity

    with pytest.raises(ConfigurationError):
        msal_identity("principal=1")
