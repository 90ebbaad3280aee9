"""``GET /v1/status`` rows of the broker's cache entries, and wall-clock times.

One row per entry: a resource token, an exchange token (T1, T2) or a managed
identity's token (the blueprint credential of ``{ managed_identity = ... }``).
Rows never carry a token value; an OBO user is a short SHA-256 prefix.
"""

from __future__ import annotations

from typing import Any

from .cache import EntryStatus
from .mi_credential import ManagedIdentityKey
from .models import ExchangeKey, ResourceKey


def wall_seconds(trio_time: float | None, now_trio: float, now_wall: float) -> int | None:
    """Convert a trio-clock instant to integer epoch seconds at the edge."""
    if trio_time is None:
        return None
    return int(now_wall + (trio_time - now_trio))


def status_row(s: EntryStatus, now_trio: float, now_wall: float) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": s.label or "resource"}
    key = s.key
    if isinstance(key, ResourceKey):
        row.update(
            profile=s.info.get("profile"),
            mode=key.mode,
            authority_host=key.authority_host,
            tenant_id=key.tenant_id,
            blueprint_app_id=key.blueprint_app_id,
            agent_identity_app_id=key.agent_identity_app_id,
            scopes=list(key.scopes),  # as requested (the cache key)
            granted_scope=s.granted_scope,  # as granted: `get --format json`'s `scope`
            user=safe_user(key.user),
            client_capabilities=list(key.client_capabilities),
        )
    elif isinstance(key, ManagedIdentityKey):
        row.update(managed_identity=key.credential.location)
    elif isinstance(key, ExchangeKey):
        row.update(
            kind=key.leg,
            authority_host=key.authority_host,
            tenant_id=key.tenant_id,
            blueprint_app_id=key.blueprint_app_id,
            agent_identity_app_id=key.agent_identity_app_id,
        )
    else:
        row["key"] = s.description
    row.update(
        state=s.state,
        expires_on=wall_seconds(s.expires_at, now_trio, now_wall),
        refresh_on=wall_seconds(s.refresh_at, now_trio, now_wall),
        last_requested=wall_seconds(s.last_requested, now_trio, now_wall),
        last_error=s.last_error,
        consecutive_failures=s.consecutive_failures,
        served_from_cache=s.served_from_cache,
        served_from_identity_provider=s.served_from_identity_provider,
    )
    return row


def safe_user(user: str | None) -> str | None:
    """UPN/object id as is; the OBO user part is already a SHA-256, shortened."""
    if user and user.startswith("sha256:"):
        return user[:23]
    return user
