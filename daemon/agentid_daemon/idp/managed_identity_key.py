"""The cache key of a managed identity's exchange token, without MSAL.

Split from :mod:`.managed_identity` (which imports MSAL and requests) because
the broker and its status rows name the key on every daemon's import path,
and a daemon started for a waiting client must reach its socket without
importing MSAL (:mod:`agentid_daemon.process.engine_host`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.models import CredentialSpec

#: The leg's name in errors and metrics.
LEG = "managed_identity"


@dataclass(frozen=True)
class ManagedIdentityKey:
    """The cache key of one managed identity's exchange token."""

    credential: CredentialSpec

    def describe(self) -> str:
        return f"managed identity {self.credential.location}"
