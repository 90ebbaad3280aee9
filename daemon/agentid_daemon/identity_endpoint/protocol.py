"""The App Service managed identity protocol (api-version 2019-08-01), sans-IO.

This is the protocol azure-identity's ``ManagedIdentityCredential`` (and so
``DefaultAzureCredential``) and MSAL's ``ManagedIdentityClient`` speak when
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set (and
``IDENTITY_SERVER_THUMBPRINT`` is not: that would mean Service Fabric)::

    GET <IDENTITY_ENDPOINT>?resource=R&api-version=2019-08-01[&client_id=C]
    X-IDENTITY-HEADER: <IDENTITY_HEADER>

    200 {"access_token", "expires_on": "<epoch seconds>", "resource": R,
         "token_type": "Bearer", "client_id"}

Both SDKs read ``expires_on`` with ``int(...)``: it must be epoch seconds
(a string, as App Service sends it), never a date. Errors use App Service's
``{"statusCode", "message"}`` shape, which MSAL folds into the message it raises.

Here: parsing a request target into :class:`MIQuery`, the resource -> scope
rule, and the response bodies. The trio side is :mod:`mi_endpoint`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from agentid_client.redact import quoted

# The longest claims text: the same bound as POST /v1/token, where it goes next.
from ..config.claims import MAX_CLAIMS_CHARS

# Shared with the sidecar API: which Host headers name loopback (DNS rebinding).
from ..server.loopback_peers import LOOPBACK_HOSTS as LOOPBACK_HOSTS
from ..server.loopback_peers import host_allowed as host_allowed

PATH = "/msi/token"
API_VERSION = "2019-08-01"
HEADER_NAME = "x-identity-header"
# The selection parameters of user-assigned identities in this protocol. This
# endpoint serves exactly one agent identity per session: a client may name it
# by its client id (a different one is an error); the other two cannot name it.
_UNSUPPORTED_ID_PARAMS = ("object_id", "mi_res_id", "principal_id")
MAX_TARGET_BYTES = 4096
MAX_QUERY_FIELDS = 32
MAX_RESOURCE_CHARS = 512
# The longest Retry-After this endpoint sends. The Azure SDKs sleep for the
# whole of it before each of their retries (azure-core's RetryPolicy honours
# Retry-After on 429/5xx, retry_status=3), so Entra's "Retry-After: 300" would
# block a program's get_token for 15 minutes; the daemon answers those retries
# from its own backoff without asking Entra, so a short pause costs nothing.
# Three retries end within 15 s.
MAX_RETRY_AFTER_S = 5
# Host names a client of a loopback endpoint may use. Anything else is a page
# that resolved its own name to 127.0.0.1 (DNS rebinding).


class MIRequestError(Exception):
    """A request this endpoint refuses: ``status`` and a message safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class MIQuery:
    """A parsed token request: the resource, and what else the client said."""

    resource: str
    client_id: str | None = None
    # Not part of the App Service protocol; forwarded when a client sends it
    # (a CAE claims challenge, JSON) so that the daemon can honour it.
    claims: str | None = None

    @property
    def scope(self) -> str:
        return resource_to_scope(self.resource)


def resource_to_scope(resource: str) -> str:
    """``R`` -> ``R/.default``, as Entra's v1 ``resource`` maps to a v2 scope.

    A resource that already is a ``/.default`` scope is kept (a client that
    passes a scope where a resource belongs still means the same thing).
    """
    if resource.endswith("/.default"):
        return resource
    return resource + "/.default"


def parse_target(target: str) -> MIQuery:
    """Parse ``/msi/token?resource=...&api-version=...``; raise :class:`MIRequestError`.

    Unknown parameters are ignored (SDKs add their own over time); a
    repeated parameter is refused rather than guessed at.
    """
    if len(target) > MAX_TARGET_BYTES:
        raise MIRequestError(414, "request target too long")
    path, _, query = target.partition("?")
    if path != PATH:
        raise MIRequestError(404, f"no such endpoint; the token endpoint is {PATH}")
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS, errors="strict"
        )
    except ValueError:  # too many fields, or percent-escapes that are not UTF-8
        raise MIRequestError(400, "malformed query string") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise MIRequestError(400, f"query parameter {quoted(name)} is repeated")
        params[name] = value
    version = params.get("api-version")
    if version is None:
        raise MIRequestError(400, f"missing api-version (this endpoint speaks {API_VERSION})")
    if version != API_VERSION:
        raise MIRequestError(
            400, f"unsupported api-version {quoted(version)}; this endpoint speaks {API_VERSION}"
        )
    resource = params.get("resource", "").strip()
    if not resource:
        raise MIRequestError(400, "missing resource")
    _check_resource(resource)
    for name in _UNSUPPORTED_ID_PARAMS:
        if name in params:
            raise MIRequestError(
                400,
                f"{name} cannot select an identity here: this endpoint serves one agent "
                "identity; name it by client_id or give no identity parameter",
            )
    client_id = params.get("client_id") or None
    if client_id is not None and not _printable(client_id, 128):
        raise MIRequestError(400, "client_id is malformed")
    claims = params.get("claims") or None
    if claims is not None and not _printable(claims, MAX_CLAIMS_CHARS, allow_space=True):
        raise MIRequestError(400, "claims is malformed")
    return MIQuery(resource=resource, client_id=client_id, claims=claims)


def token_body(
    *, access_token: str, expires_on: int, resource: str, client_id: str
) -> dict[str, Any]:
    """The 200 body. ``expires_on`` is a string of epoch seconds, as App Service sends."""
    return {
        "access_token": access_token,
        "expires_on": str(int(expires_on)),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }


def error_body(status: int, message: str) -> dict[str, Any]:
    """App Service's error shape (MSAL reports ``statusCode, message``)."""
    return {"statusCode": status, "message": message}


def _check_resource(resource: str) -> None:
    if not _printable(resource, MAX_RESOURCE_CHARS):
        raise MIRequestError(400, "resource is malformed")


def _printable(value: str, limit: int, *, allow_space: bool = False) -> bool:
    if len(value) > limit:
        return False
    return all(c.isprintable() and (allow_space or not c.isspace()) for c in value)
