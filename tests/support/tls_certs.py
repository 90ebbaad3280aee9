"""A throwaway CA and a 127.0.0.1 server certificate for the fake HTTPS servers.

kubectl and git verify TLS for real, so each fake server gets a certificate
for ``127.0.0.1`` (IP SAN) and ``localhost`` signed by its own CA; the tests
hand the CA's PEM to kubectl (``certificate-authority``) and git
(``http.sslCAInfo``). The key material is the emulator's own
(:func:`agentid_emulator.certs.ensure_key_material`), one source for how a
local CA and its server certificate are made.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from agentid_emulator.certs import ensure_key_material


@dataclass(frozen=True)
class ServerTls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_server_tls(directory: Path) -> ServerTls:
    """A fresh CA and server certificate under *directory* (keys 0600), the emulator's way."""
    material = ensure_key_material(directory)
    return ServerTls(material.ca_cert_path, material.server_cert_path, material.server_key_path)
