"""Validators for the selection fields shared by the config file and requests.

Each validator takes the raw value and returns its canonical form, or raises
``ValueError`` with a reason that never repeats a secret value (the caller
adds the file/key context and picks the error class: ConfigurationError for
the file, InvalidRequest for a request). Pure functions: no I/O.

Tenant ids: a GUID or a verified domain name (``contoso.onmicrosoft.com``),
as Entra accepts both in the authority path. The multi-tenant aliases
``common``, ``organizations`` and ``consumers`` are refused: agent identity
flows need one tenant. Both are lower-cased, so a cache key does not depend on
the spelling (a GUID and the domain of the same tenant remain two keys).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from agentid_client.contract import MAX_USER_TOKEN_CHARS
from agentid_client.redact import quoted

from ..core.models import Mode

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SESSION_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_UPN_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_MULTI_TENANT = frozenset({"common", "organizations", "consumers"})


def _require_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    text: str = value.strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def guid(value: Any) -> str:
    text = _require_str(value)
    if not GUID_RE.match(text):
        raise ValueError(
            f"{quoted(text)} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        )
    return text.lower()


def tenant(value: Any) -> str:
    text = _require_str(value)
    if GUID_RE.match(text):
        return text.lower()
    lowered = text.lower()
    if lowered in _MULTI_TENANT:
        raise ValueError(
            f"{quoted(text)} is a multi-tenant alias; agent identities need a tenant GUID or domain"
        )
    if not _DOMAIN_RE.match(lowered):
        raise ValueError(
            f"{quoted(text)} is neither a tenant GUID nor a domain name such as "
            "contoso.onmicrosoft.com"
        )
    return lowered


def authority_host(value: Any) -> str:
    """``https://host[:port]`` without path, query or trailing slash."""
    text = _require_str(value)
    parts = urlsplit(text)
    if parts.scheme.lower() != "https":
        raise ValueError(
            f"{quoted(text)} must be an https:// URL (tokens never travel in clear text)"
        )
    if not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{quoted(text)} must be https://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"{quoted(text)} must be the host only (the tenant is set by tenant_id), "
            "e.g. https://login.microsoftonline.com"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{quoted(text)} has an invalid port") from None
    return f"https://{parts.netloc.lower()}"


def graph_endpoint(value: Any) -> str:
    """``https://host[:port][/path]`` of Microsoft Graph (the API version is added
    per call): no query, no trailing slash."""
    text = _require_str(value)
    parts = urlsplit(text)
    if parts.scheme.lower() != "https":
        raise ValueError(
            f"{quoted(text)} must be an https:// URL (tokens never travel in clear text)"
        )
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{quoted(text)} must be https://host[:port][/path]")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{quoted(text)} has an invalid port") from None
    return f"https://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def mode(value: Any) -> Mode:
    text = _require_str(value)
    for candidate in Mode:
        if candidate.value.lower() == text.lower():
            return candidate
    raise ValueError(f"{quoted(text)} is not a mode; use one of {', '.join(m.value for m in Mode)}")


def upn(value: Any) -> str:
    text = _require_str(value)
    if not _UPN_RE.match(text):
        raise ValueError(f"{quoted(text)} is not a user principal name (name@domain)")
    return text.lower()


def user_token(value: Any) -> str:
    # Never echo the value: it is a bearer token.
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_USER_TOKEN_CHARS:
        raise ValueError(f"is longer than {MAX_USER_TOKEN_CHARS} characters")
    if any(c.isspace() for c in text) or text.count(".") != 2:
        raise ValueError("is not a JWT (header.payload.signature)")
    return text


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT (``header.payload.signature``), read without verifying it.

    Only for deciding what to do before the identity provider, which verifies
    the token, sees it: its ``exp`` (:func:`user_token_expiry`), its user (an
    OBO session's ``user_fingerprint``). None when the payload is not
    base64url JSON of an object (or is nested deeper than ``json`` recurses).
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeError, RecursionError):  # binascii.Error is a ValueError
        return None
    return claims if isinstance(claims, dict) else None


def user_token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a user token (a JWT), read without verifying it.

    The identity provider verifies the token; the daemon reads ``exp`` only to
    refuse a token that has expired before it looks for a cached OBO result
    made from it. None when the payload is not base64url JSON or has no ``exp``.
    """
    claims = unverified_claims(token)
    exp = claims.get("exp") if claims is not None else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def env_name(value: Any) -> str:
    text = _require_str(value)
    if not _ENV_NAME_RE.match(text):
        raise ValueError(f"{quoted(text)} is not an environment variable name")
    return text


def obo_session_name(value: Any) -> str:
    """A name the caller picks for a long-running OBO session (``--obo-session``)."""
    text = _require_str(value)
    if not _SESSION_RE.match(text):
        raise ValueError(
            f"{quoted(text)} is not a session name (1-128 letters, digits or . _ - : @)"
        )
    return text


def profile_name(value: Any) -> str:
    return _require_str(value)


def non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    if not value >= 0 or value == float("inf"):  # also rejects NaN
        raise ValueError(f"must be a number >= 0, got {value!r}")
    return float(value)


def positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"must be a positive number, got {quoted(value)}")
    return float(value)


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:PORT"`` -> (host, port); loopback addresses only (ValueError)."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be HOST:PORT such as 127.0.0.1:8081, not {quoted(value)}")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"host {quoted(host)} must be a loopback IP address such as 127.0.0.1"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"host {host} is not a loopback address: the daemon's TCP endpoints "
            "only listen on loopback (127.0.0.1)"
        )
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {quoted(port_text)} must be a number from 1 to 65535")
    return str(address), int(port_text)
