"""Claims challenges and client capabilities: validation and the JSON MSAL sends.

A resource that wants more than the cached token offers (Conditional Access,
a CAE revocation) answers ``401`` with ``WWW-Authenticate: Bearer ...,
error="insufficient_claims", claims="<base64>"``. Callers may hand the daemon
that base64 value or the JSON it decodes to; :func:`normalise_claims` accepts
both and returns compact JSON, which is what MSAL's ``claims_challenge=``
takes. Claims are not secrets, but they are bounded and must be a JSON object.

:func:`merge_capabilities` is MSAL's own representation of
``client_capabilities`` (``{"access_token": {"xms_cc": {"values": [...]}}}``,
msal/application.py ``_merge_claims_challenge_and_capabilities``). MSAL merges
it itself on every leg but one: ``acquire_token_by_refresh_token`` sends only
the ``data`` it is given, so the engine merges it there with this function.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from agentid_client.redact import quoted

MAX_CLAIMS_CHARS = 8192
_CAPABILITY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_CAPABILITIES = 16


def normalise_claims(value: Any) -> str:
    """JSON object text, or its base64/base64url form -> compact JSON text."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_CLAIMS_CHARS:
        raise ValueError(f"is longer than {MAX_CLAIMS_CHARS} characters")
    if not text.startswith("{"):
        text = _from_base64(text)
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(
            'is neither a JSON object nor its base64 form (the claims="..." '
            "value of a WWW-Authenticate challenge)"
        ) from None
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError('must be a non-empty JSON object such as {"access_token": {...}}')
    return json.dumps(parsed, separators=(",", ":"), sort_keys=True)


def _from_base64(text: str) -> str:
    # WWW-Authenticate carries standard base64 (often unpadded); accept base64url too.
    raw = text.replace("-", "+").replace("_", "/")
    raw += "=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValueError(
            'is neither a JSON object nor valid base64 of one (the claims="..." '
            "value of a WWW-Authenticate challenge)"
        ) from None


def capabilities(value: Any) -> tuple[str, ...]:
    """``client_capabilities``: short names such as ``["cp1"]`` (or ``"cp1 x"``), sorted, unique."""
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list | tuple):
        raise ValueError('must be a list of strings such as ["cp1"]')
    if len(value) > MAX_CAPABILITIES:
        raise ValueError(f"must have at most {MAX_CAPABILITIES} entries")
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not _CAPABILITY_RE.match(item.strip()):
            raise ValueError(
                f"entry {quoted(item)} is not a capability name (letters, digits, '.', '_', '-')"
            )
        out.add(item.strip())
    return tuple(sorted(out))


def merge_capabilities(caps: tuple[str, ...], claims: str | None) -> str | None:
    """The ``claims`` request parameter MSAL would send for ``caps`` plus ``claims``."""
    if not caps:
        return claims
    merged: dict[str, Any] = json.loads(claims) if claims else {}
    merged.setdefault("access_token", {}).update(xms_cc={"values": list(caps)})
    return json.dumps(merged, separators=(",", ":"))
