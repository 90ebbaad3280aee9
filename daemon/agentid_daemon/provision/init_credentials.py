"""The new blueprint's credential, as ``init`` makes it: where it is kept and the
Graph call that registers it. The secret is never printed or logged.

- ``keyring``: ``addPassword``'s ``secretText`` goes straight into the
  keyring (service ``agentid-helper``, user = the blueprint app id: what
  ``blueprint_credential = "keyring"`` reads).
- ``secret-file``: the same secret into a new 0600 file
  (``{ secret_file = PATH }``).
- ``certificate``: an RSA key and a self-signed certificate made here, written
  as one 0600 PEM file (``{ certificate_file = PATH }``); the certificate is
  registered as the blueprint's ``keyCredentials`` (create-blueprint.md, "You
  can also use client certificates"; Graph's keyCredential resource:
  ``AsymmetricX509Cert``, usage ``Verify``, the base64 DER certificate).
- ``managed-identity``: a federated identity credential naming the host's
  managed identity (create-blueprint.md: issuer
  ``{authority}/{tenant}/v2.0``, subject = its principal id, audience
  ``api://AzureADTokenExchange``); no secret exists at all.

Files are reserved (created empty, exclusively, not following symlinks)
before the first Graph call, so a path problem stops ``init`` before anything
exists in the directory; :meth:`CredentialPlan.discard` removes a reserved
file whose credential was never registered (it would open nothing).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentid_client.secretcmd import NO_BACKEND_HINTS, usable_backend

from ..core.errors import ConfigurationError
from ..idp.credentials import KEYRING_SERVICE
from . import graph as G
from .init_answers import InitAnswers
from .profile_file import prepare_new_file

#: Validity of a generated certificate; Graph takes keyCredentials up to the
#: certificate's own end date.
CERTIFICATE_DAYS = 365
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class CredentialPlan:
    """One ``init``'s credential, from reservation to registration."""

    answers: InitAnswers
    _reserved: Path | None = None
    _registered: bool = False
    _pem: bytes = field(default=b"", repr=False)
    _certificate_der: bytes = field(default=b"", repr=False)

    # -- before any Graph call -----------------------------------------------

    def prepare(self) -> None:
        """Check the keyring or reserve the file (ConfigurationError, exit 5)."""
        kind = self.answers.credential
        if kind == "keyring":
            _, problem = usable_backend()
            if problem:
                raise ConfigurationError(
                    f"{problem}: init would have nowhere to keep the secret",
                    hint=" ".join(NO_BACKEND_HINTS) + " (init --credential secret-file)",
                )
        elif kind in ("secret-file", "certificate"):
            path = self.answers.credential_file
            assert path is not None  # init_answers sets it for these kinds
            prepare_new_file(path)
            try:
                os.close(os.open(path, _FILE_FLAGS, 0o600))
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot create the credential file {path}: {exc.strerror}"
                ) from None
            self._reserved = path
            if kind == "certificate":
                self._make_certificate()
                self._write(self._pem)

    def _make_certificate(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.answers.profile)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERTIFICATE_DAYS))
            .sign(key, hashes.SHA256())
        )
        self._certificate_der = cert.public_bytes(serialization.Encoding.DER)
        self._pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ) + cert.public_bytes(serialization.Encoding.PEM)

    # -- after the blueprint exists --------------------------------------------

    def register(
        self, client: G.GraphClient, token: str, blueprint: dict[str, Any], tenant_id: str
    ) -> str:
        """Make the credential and register it with ``blueprint`` (of ``tenant_id``);
        what it is, for messages."""
        object_id, app_id = str(blueprint["id"]), str(blueprint["appId"])
        kind = self.answers.credential
        if kind in ("keyring", "secret-file"):
            request = G.add_password_request(object_id, f"agentid-helper {self.answers.profile}")
            reply = client.call(request, token, what="add a client secret to the blueprint")
            secret = reply.get("secretText") if reply else None
            if not isinstance(secret, str) or not secret:
                raise G.GraphRequestError("Microsoft Graph answered addPassword with no secret")
            if kind == "keyring":
                keyring, _ = usable_backend()
                try:
                    keyring.set_password(KEYRING_SERVICE, app_id.lower(), secret)
                except Exception as exc:  # keyring's backends raise what they like
                    raise ConfigurationError(
                        f"the keyring refused the blueprint's secret ({type(exc).__name__}); "
                        "the secret is kept nowhere",
                        hint="remove the blueprint (below) and run init again, e.g. with "
                        "--credential secret-file",
                    ) from None
                self._registered = True
                return f"a client secret, in the keyring (service {KEYRING_SERVICE}, user {app_id})"
            self._write(secret.encode())
            self._registered = True
            return f"a client secret, in {self._reserved} (0600)"
        if kind == "certificate":
            entry = {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": base64.b64encode(self._certificate_der).decode("ascii"),
                "displayName": f"CN={self.answers.profile}",
            }
            request = G.set_key_credentials_request(object_id, [entry])
            client.call(request, token, what="add the certificate to the blueprint")
            self._registered = True
            return f"a certificate; its key in {self._reserved} (0600)"
        principal = self.answers.managed_identity_principal_id
        assert principal is not None  # init_answers asks for it
        issuer = f"{self.answers.authority_host}/{tenant_id}/v2.0"
        request = G.add_federated_credential_request(
            object_id, f"agentid-helper-{self.answers.profile}", issuer, principal
        )
        client.call(request, token, what="add the managed identity as a federated credential")
        self._registered = True
        return f"the managed identity {self.answers.managed_identity} (federated credential)"

    def profile_value(self) -> str | dict[str, str]:
        """The profile's ``blueprint_credential``."""
        kind = self.answers.credential
        if kind == "keyring":
            return "keyring"
        if kind == "managed-identity":
            return {"managed_identity": str(self.answers.managed_identity)}
        key = "secret_file" if kind == "secret-file" else "certificate_file"
        return {key: str(self._reserved)}

    @property
    def file(self) -> Path | None:
        """The credential file, once it holds a registered credential."""
        return self._reserved if self._registered else None

    def discard(self) -> None:
        """Remove the reserved file unless its credential was registered (init stopped)."""
        if self._reserved is not None and not self._registered:
            with contextlib.suppress(FileNotFoundError):
                self._reserved.unlink()
            self._reserved = None

    def _write(self, data: bytes) -> None:
        assert self._reserved is not None
        try:
            fd = os.open(self._reserved, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                view = memoryview(data)
                while view:  # os.write may write less than asked
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write the credential into {self._reserved}: {exc.strerror}"
            ) from None
