"""Entra's error responses: the JSON shape and the AADSTS codes the emulator uses.

Entra answers a refused token request with HTTP 400 (401 for ``invalid_client``)
and a body like::

    {"error": "invalid_client",
     "error_description": "AADSTS7000215: Invalid client secret provided. ...
                           Trace ID: ... Correlation ID: ... Timestamp: ...",
     "error_codes": [7000215], "timestamp": "2026-01-01 10:00:00Z",
     "trace_id": "...", "correlation_id": "...", "error_uri": ".../error?code=7000215"}

Descriptions are built from identifiers only: never a secret, assertion or token.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

# error codes -> OAuth "error" value and HTTP status
_KINDS: dict[int, tuple[str, int]] = {
    7000215: ("invalid_client", 401),  # wrong client secret
    7000216: ("invalid_client", 401),  # no credential at all
    700027: ("invalid_client", 401),  # client assertion signature
    700024: ("invalid_client", 401),  # client assertion expired / not yet valid
    7002137: ("invalid_client", 401),  # no federated identity record for the subject
    700211: ("invalid_client", 401),  # no federated record for the issuer
    700212: ("invalid_client", 401),  # no federated record for the audience
    700213: ("invalid_client", 401),  # no federated record for the subject (external)
    700021: ("invalid_client", 401),  # client assertion iss/sub is not the client_id
    50027: ("invalid_request", 400),  # malformed JWT
    50034: ("invalid_grant", 400),  # user not found
    50013: ("invalid_grant", 400),  # OBO assertion audience invalid
    500133: ("invalid_grant", 400),  # OBO assertion expired
    500011: ("invalid_resource", 400),  # resource principal not found
    1002012: ("invalid_scope", 400),  # client credentials scope without /.default
    70011: ("invalid_scope", 400),  # scope not valid
    28000: ("invalid_scope", 400),  # more than one resource
    900144: ("invalid_request", 400),  # missing parameter
    70003: ("unsupported_grant_type", 400),
    700016: ("unauthorized_client", 400),  # unknown application
    90002: ("invalid_tenant", 400),  # unknown tenant
    90055: ("temporarily_unavailable", 429),  # throttled (fault injection)
    90033: ("temporarily_unavailable", 503),  # transient (fault injection)
}


def utc_timestamp(now: float) -> str:
    """Entra's timestamp format: ``2026-01-01 10:00:00Z``."""
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class AadstsError(Exception):
    """A refused request: ``code`` is the AADSTS number, ``message`` its text."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        error: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        kind, default_status = _KINDS.get(code, ("invalid_request", 400))
        self.code = code
        self.message = message
        self.error = error or kind
        self.status = status or default_status
        self.headers = headers or {}


def missing_parameter(name: str) -> AadstsError:
    return AadstsError(900144, f"The request body must contain the following parameter: '{name}'.")


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def render(
    err: AadstsError, *, now: float, correlation_id: str | None, authority_host: str
) -> ErrorResponse:
    """The Entra-shaped JSON body of ``err``; echoes the client's correlation id."""
    trace_id = str(uuid.uuid4())
    correlation = correlation_id or str(uuid.uuid4())
    stamp = utc_timestamp(now)
    description = (
        f"AADSTS{err.code}: {err.message} Trace ID: {trace_id} "
        f"Correlation ID: {correlation} Timestamp: {stamp}"
    )
    body = {
        "error": err.error,
        "error_description": description,
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation,
        "error_uri": f"{authority_host}/error?code={err.code}",
    }
    return ErrorResponse(err.status, body, dict(err.headers))
