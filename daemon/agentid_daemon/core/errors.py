"""Typed errors shared by every daemon layer.

Each error knows the HTTP status and the ``error`` code it becomes at the API
edge (docs/api.md: invalid_request 400, unknown_profile 404, forbidden 403,
identity_provider_error 502, identity_provider_unavailable 503). Messages
never contain tokens or secrets: callers build them from identifiers only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def clip_at_word(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its longest run of whole
    words that does, with `` ...``: an app id, tenant id or AADSTS code in an
    Entra description is either shown whole or not at all."""
    if len(text) <= limit:
        return text
    room = limit - len(" ...")
    cut = text.rfind(" ", 0, room + 1)
    head = text[:cut] if cut > 0 else text[:room]  # one giant word: nothing better to do
    return head.rstrip(" ,;:") + " ..."


def error_body(
    error: str,
    description: str,
    *,
    hint: str | None = None,
    aadsts_codes: Iterable[int] = (),
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """The one shape of every error answer (docs/api.md, "Errors")."""
    return {
        "error": error,
        "error_description": description,
        "aadsts_codes": list(aadsts_codes),
        "correlation_id": correlation_id,
        "hint": hint,
    }


class AgentIdError(Exception):
    """Base class: an error the API reports as JSON."""

    http_status: int = 500
    error_code: str = "internal_error"

    def __init__(self, description: str, *, hint: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.hint = hint
        #: Seconds until the cache tries again for the key (its backoff), set by
        #: the cache as it reports the error; the API sends it on (Retry-After).
        self.next_attempt_in_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return error_body(self.error_code, self.description, hint=self.hint)


class InvalidRequest(AgentIdError):
    """The request (or a merged profile) is malformed: bad GUID, mode, scope..."""

    http_status = 400
    error_code = "invalid_request"


class UnknownProfile(AgentIdError):
    http_status = 404
    error_code = "unknown_profile"


class ConfigurationError(AgentIdError):
    """The daemon's configuration (file, credential source) is unusable.

    Not one of the request errors of docs/api.md: the client maps it to exit code 5.
    """

    http_status = 500
    error_code = "configuration_error"


class IdentityProviderError(AgentIdError):
    """Entra (or the network in front of it) refused or failed a token request.

    ``transient`` separates what a retry may fix (5xx, 429, network errors,
    timeouts) from what it will not (invalid_client, invalid_grant, consent).
    ``retry_after_s`` carries a ``Retry-After`` the identity provider sent, or
    the pause the daemon keeps on its behalf (a claims challenge refused by the
    cache's per-key limit, which is never sent).
    """

    http_status = 502
    error_code = "identity_provider_error"

    def __init__(
        self,
        description: str,
        *,
        transient: bool = False,
        aadsts_codes: tuple[int, ...] = (),
        correlation_id: str | None = None,
        hint: str | None = None,
        retry_after_s: float | None = None,
        leg: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(description, hint=hint)
        self.transient = transient
        self.aadsts_codes = tuple(aadsts_codes)
        self.correlation_id = correlation_id
        self.retry_after_s = retry_after_s
        self.leg = leg
        self.status = status
        if transient:
            self.http_status = 503
            self.error_code = "identity_provider_unavailable"

    def to_json(self) -> dict[str, Any]:
        return error_body(
            self.error_code,
            self.description,
            hint=self.hint,
            aadsts_codes=self.aadsts_codes,
            correlation_id=self.correlation_id,
        )
