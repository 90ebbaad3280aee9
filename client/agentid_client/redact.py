"""Quoting input in error texts without ever echoing a token or a secret.

An error names the value it refuses, so that a typo is easy to spot. But a
value given where a GUID, a profile or a scope belongs is sometimes a token
pasted into the wrong flag (or an OBO user token, a blueprint secret): the
error text goes to stderr, CI logs and the daemon's journal, so it must
never carry it. :func:`quoted` is the one way every validation message of the
daemon and the client quotes input: short ordinary values in full (as
``repr`` does), anything that may be a credential as a few leading
characters and its length.

Imports nothing, like :mod:`contract`: the client's hot path and the daemon
both use it.
"""

from __future__ import annotations

# Longer than any GUID (36), capability, mode or typical scope: a value this
# long in a selection field is more likely pasted data than a typo.
MAX_QUOTED_CHARS = 64
# What is shown of a value that may be a credential: enough to recognise
# "eyJ0" (a JWT's header) or a secret's first characters, nothing to use.
SHOWN_PREFIX_CHARS = 4
# Entra client secrets are 40 characters with a "~" among their first few
# (e.g. "abc8Q~..."); no GUID, domain, UPN or scope has both.
_SECRET_MIN_CHARS = 30


def may_be_credential(text: str) -> bool:
    """True for a value that could be a token or secret (never shown in full)."""
    if len(text) > MAX_QUOTED_CHARS:
        return True
    if text.startswith("eyJ"):  # base64url of '{"': every JWT (JWS or JWE) starts so
        return True
    return "~" in text[:8] and len(text) >= _SECRET_MIN_CHARS


def quoted(value: object) -> str:
    """``value`` quoted for an error message: ``'abc'``, or for anything that
    may be a credential ``'eyJ0...' (1282 characters, not shown)``."""
    text = value if isinstance(value, str) else str(value)
    if not may_be_credential(text):
        return repr(text)
    prefix = "".join(
        c if c.isprintable() and c not in "'\\" else "?" for c in text[:SHOWN_PREFIX_CHARS]
    )
    return f"'{prefix}...' ({len(text)} characters, not shown)"
