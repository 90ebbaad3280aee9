"""Turn a :class:`CredentialSpec` into what MSAL's ``client_credential`` takes.

Sync and blocking (file reads, keyring D-Bus calls): the engine calls it from
worker threads, on every T1 request, so a rotated secret or certificate is
picked up without restarting the daemon.

Errors are :class:`ConfigurationError` naming the *source* (file path, keyring
entry, environment variable), never the value.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from ..core.errors import ConfigurationError
from ..core.models import CredentialSpec
from ..core.secret_files import read_credential_file

KEYRING_SERVICE = "agentid-helper"
# Set by the AKS workload identity webhook (and read by azure-identity's
# WorkloadIdentityCredential): the projected service account token's path.
FEDERATED_TOKEN_FILE_ENV = "AZURE_FEDERATED_TOKEN_FILE"
FEDERATED_TOKEN = "federated token file"

ClientCredential = str | dict[str, Any]


def load_client_credential(spec: CredentialSpec) -> ClientCredential:
    """Read the blueprint credential described by ``spec``.

    Returns a client secret string, a certificate dict
    (``private_key``, ``public_certificate``, informational
    ``thumbprint_sha1``/``thumbprint_sha256``) or ``{"client_assertion": callable}`` for a
    federated token file (re-read on every use: the platform rotates it).
    """
    if spec.kind == "keyring":
        return _from_keyring(spec.location)
    if spec.kind == "env":
        return _from_env(spec.location)
    if spec.kind == "workload_identity":
        return _from_workload_identity()
    if spec.kind == "managed_identity":
        # Its token is a cache entry of its own, handed to the engine as the
        # assertion (broker -> Engine.acquire_t1(assertion=...)).
        raise ConfigurationError("a managed identity credential is not read from a source")
    path = _expand_at_use(spec.location, spec.kind)
    if spec.kind == "secret_file":
        return _read_text(path, "secret file")
    if spec.kind == "certificate_file":
        return _from_certificate(path)
    if spec.kind == "federated_token_file":
        _read_text(path, FEDERATED_TOKEN, secret=False)  # fail early, at load time
        return {"client_assertion": _FileAssertion(path)}
    raise ConfigurationError(f"unknown credential kind {spec.kind!r}")


def credential_fingerprint(credential: ClientCredential) -> str:
    """A stable digest of a loaded credential (an app-cache key part; not reversible)."""
    h = hashlib.sha256()
    if isinstance(credential, str):
        h.update(b"secret\0" + credential.encode())
    elif "client_assertion" in credential:
        assertion = credential["client_assertion"]
        source = assertion.path if isinstance(assertion, _FileAssertion) else id(assertion)
        h.update(b"assertion\0" + repr(source).encode())
    else:
        h.update(b"cert\0" + str(credential.get("private_key", "")).encode())
        h.update(b"\0" + str(credential.get("public_certificate", "")).encode())
    return h.hexdigest()


def _expand_at_use(location: str, kind: str) -> str:
    """Expand a credential path whose ``$VAR`` was unset when the config loaded.

    A profile may name ``$CREDENTIALS_DIRECTORY/bp`` (systemd ``LoadCredential=``)
    and still be loaded by a daemon started outside systemd: only that profile
    fails, when it is used, with a message that names the variable.
    """
    if "$" not in location:
        return location
    expanded = os.path.expandvars(location)
    if "$" in expanded:
        unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
        raise ConfigurationError(
            f"{kind.replace('_', ' ')} {location} names unset environment variable "
            f"{', '.join(unset) or '?'}",
            hint="CREDENTIALS_DIRECTORY is set by systemd for units with LoadCredential=; "
            "run the daemon as the systemd user service or use an absolute path",
        )
    return os.path.normpath(expanded)


class _FileAssertion:
    """MSAL ``client_assertion`` callable: the current content of a token file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> str:
        return _read_text(self.path, FEDERATED_TOKEN, secret=False)

    def __repr__(self) -> str:
        return f"<federated token file {self.path}>"


def _read_text(path: str, what: str, *, secret: bool = True) -> str:
    # A trusted regular file only, size-capped, read with a timeout (secret_files.py).
    raw = read_credential_file(path, what, secret=secret)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{what} {path} is not UTF-8 text") from None
    del raw  # dropped at once: the daemon keeps no copy of a file's secret around
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # open()'s universal newlines
    # Only line endings are trimmed: editors and `echo` add them; anything else
    # is part of the value.
    text = text.rstrip("\r\n")
    if not text.strip():
        raise ConfigurationError(f"{what} {path} is empty")
    return text


def _from_workload_identity() -> dict[str, Any]:
    """``"workload_identity"``: the token file AKS projects, named by the webhook's variable."""
    path = os.environ.get(FEDERATED_TOKEN_FILE_ENV, "").strip()
    if not path:
        raise ConfigurationError(
            f'blueprint_credential "workload_identity" needs {FEDERATED_TOKEN_FILE_ENV}, '
            "which is not set in the daemon's environment",
            hint='label the pod azure.workload.identity/use: "true" (the AKS workload '
            'identity webhook sets it), or use { federated_token_file = "/path" }',
        )
    _read_text(path, FEDERATED_TOKEN, secret=False)  # fail early, at load time
    return {"client_assertion": _FileAssertion(path)}


def _from_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigurationError(f"environment variable {name} (blueprint secret) is not set")
    value = value.rstrip("\r\n")
    if not value.strip():
        raise ConfigurationError(f"environment variable {name} (blueprint secret) is empty")
    return value


def _keyring_hint(blueprint_app_id: str) -> str:
    return f"store it with: agentid-helper secret set --blueprint-app-id {blueprint_app_id}"


def _from_keyring(blueprint_app_id: str) -> str:
    if not blueprint_app_id:
        raise ConfigurationError("keyring credential without a blueprint app id")
    try:
        import keyring  # lazy: slow to import, and only the daemon needs it
        import keyring.errors
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ConfigurationError(f"the keyring module is unavailable: {exc}") from None
    try:
        value = keyring.get_password(KEYRING_SERVICE, blueprint_app_id)
    except keyring.errors.NoKeyringError:
        raise ConfigurationError(
            "no keyring backend is available (no Secret Service running?) to read the "
            f"blueprint secret for {blueprint_app_id}",
            hint="start a Secret Service (e.g. gnome-keyring) or set blueprint_credential "
            "to { secret_file = ... } or { env = ... }",
        ) from None
    except keyring.errors.KeyringLocked:
        raise ConfigurationError(
            f"the keyring is locked: cannot read the blueprint secret for {blueprint_app_id}",
            hint="unlock the login keyring",
        ) from None
    except keyring.errors.KeyringError as exc:
        raise ConfigurationError(
            f"keyring error reading the blueprint secret for {blueprint_app_id}: "
            f"{type(exc).__name__}"
        ) from None
    except ImportError as exc:
        # PYTHON_KEYRING_BACKEND names a module this interpreter cannot import:
        # keyring imports it at the first call.
        raise ConfigurationError(
            f"the keyring backend cannot be loaded ({exc.name or exc}): cannot read the "
            f"blueprint secret for {blueprint_app_id}",
            hint="check PYTHON_KEYRING_BACKEND (the daemon gets it from the client or the "
            "systemd unit) or set blueprint_credential to { secret_file = ... }",
        ) from None
    if not value:
        raise ConfigurationError(
            f"no blueprint secret in the keyring (service {KEYRING_SERVICE!r}, "
            f"user {blueprint_app_id})",
            hint=_keyring_hint(blueprint_app_id),
        )
    return value


def _from_certificate(path: str) -> dict[str, Any]:
    """PEM file with a private key and its certificate -> MSAL certificate credential."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    what = "certificate file"
    pem = _read_text(path, what).encode()
    try:
        key = serialization.load_pem_private_key(_pem_block(pem, b"PRIVATE KEY"), password=None)
    except _NoBlock:
        raise ConfigurationError(f"{what} {path} holds no PEM private key") from None
    except TypeError:
        raise ConfigurationError(
            f"{what} {path}: the private key is encrypted; give an unencrypted key"
        ) from None
    except ValueError:
        raise ConfigurationError(f"{what} {path}: the private key is unreadable") from None
    try:
        cert_pem = _pem_block(pem, b"CERTIFICATE")
        cert = x509.load_pem_x509_certificate(cert_pem)
    except _NoBlock:
        raise ConfigurationError(f"{what} {path} holds no PEM certificate") from None
    except ValueError:
        raise ConfigurationError(f"{what} {path}: the certificate is unreadable") from None
    pub = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    own = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != own:
        raise ConfigurationError(f"{what} {path}: the certificate does not match the private key")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "private_key": key_pem,
        "public_certificate": cert_pem.decode(),
        # MSAL computes the thumbprints itself from public_certificate (and
        # signs with PS256 + x5t#S256, sending x5c); these informational keys
        # are ignored by MSAL ("thumbprint" would force legacy SHA-1/RS256).
        "thumbprint_sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),
        "thumbprint_sha256": cert.fingerprint(hashes.SHA256()).hex().upper(),
    }


class _NoBlock(Exception):
    pass


def _pem_block(pem: bytes, label: bytes) -> bytes:
    """The first PEM block whose label ends with ``label`` (e.g. RSA/EC PRIVATE KEY)."""
    start = 0
    while True:
        begin = pem.find(b"-----BEGIN ", start)
        if begin < 0:
            raise _NoBlock(label)
        eol = pem.find(b"-----", begin + 11)
        if eol < 0:
            raise _NoBlock(label)
        name = pem[begin + 11 : eol]
        end_marker = b"-----END " + name + b"-----"
        end = pem.find(end_marker, eol)
        if end < 0:
            raise _NoBlock(label)
        if name.endswith(label):
            return pem[begin : end + len(end_marker)] + b"\n"
        start = end + len(end_marker)
