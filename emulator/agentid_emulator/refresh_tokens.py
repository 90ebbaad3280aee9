"""Refresh tokens for OBO, and revoked access tokens: the emulator's memory of grants.

Entra answers an OBO request that asks for ``offline_access`` (MSAL always
does) with a refresh token as well; for agent identities that token is
redeemed with the refresh-token grant, T1 as the client assertion
(agent-on-behalf-of-oauth-flow.md, "Refresh token support"). Entra's refresh
tokens are opaque (``1.A...``), bound to the client and the user, and each
redemption returns a new one; so are these. A redeemed token stays valid
until it expires (Entra does not make them single-use either).

Revocation (``POST /_emulator/faults {"revoke_token": ...}``) marks one access
token revoked, by its ``uti``, as a CAE event would; a refresh token given
there is revoked too. The token endpoint never hands a revoked token back
(every answer is minted afresh), and ``/_emulator/tokens/introspect`` tells a
resource stub that a token was revoked, so the stub can answer a claims
challenge. Everything lives in memory and is bounded.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .errors import AadstsError

# Entra's refresh tokens for work accounts live 90 days (sliding).
REFRESH_TOKEN_LIFETIME_S = 90 * 86_400
MAX_GRANTS = 20_000


@dataclass(frozen=True)
class Grant:
    """What a refresh token stands for."""

    tenant_id: str
    client_id: str  # the agent identity it was issued to
    user_object_id: str
    expires_at: float


def new_refresh_token() -> str:
    """Opaque, Entra-shaped: "1.A" then base64url (hundreds of characters)."""
    return "1.A" + secrets.token_urlsafe(300)


class GrantStore:
    """Issued refresh tokens and revoked access tokens (thread-safe, bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: OrderedDict[str, Grant] = OrderedDict()
        self._revoked_utis: OrderedDict[str, float] = OrderedDict()

    def issue(
        self, *, tenant_id: str, client_id: str, user_object_id: str, now: float | None = None
    ) -> str:
        now = time.time() if now is None else now
        token = new_refresh_token()
        grant = Grant(tenant_id, client_id.lower(), user_object_id, now + REFRESH_TOKEN_LIFETIME_S)
        with self._lock:
            self._grants[token] = grant
            while len(self._grants) > MAX_GRANTS:
                self._grants.popitem(last=False)
        return token

    def redeem(
        self, token: str, *, tenant_id: str, client_id: str, now: float | None = None
    ) -> Grant:
        """The grant of a refresh token presented by ``client_id``, or Entra's error."""
        now = time.time() if now is None else now
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.tenant_id != tenant_id:
            raise AadstsError(
                9002313,
                "Invalid request. Request is malformed or invalid: the refresh token is not valid.",
                error="invalid_grant",
            )
        if grant.client_id != client_id.lower():
            raise AadstsError(
                70000,
                "The provided grant is invalid or malformed: the "
                "refresh token was issued to a different client.",
                error="invalid_grant",
            )
        if now >= grant.expires_at:
            raise AadstsError(
                700082, "The refresh token has expired due to inactivity.", error="invalid_grant"
            )
        return grant

    def revoke_refresh_token(self, token: str) -> bool:
        with self._lock:
            return self._grants.pop(token, None) is not None

    def revoke_uti(self, uti: str, *, now: float | None = None) -> None:
        with self._lock:
            self._revoked_utis[uti] = time.time() if now is None else now
            while len(self._revoked_utis) > MAX_GRANTS:
                self._revoked_utis.popitem(last=False)

    def is_revoked(self, uti: str) -> bool:
        with self._lock:
            return uti in self._revoked_utis

    def clear(self) -> None:
        with self._lock:
            self._grants.clear()
            self._revoked_utis.clear()
