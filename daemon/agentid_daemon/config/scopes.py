"""Scope normalisation and per-mode validation.

Normalised scopes form part of the token cache key, so two spellings of one
request must normalise to the same tuple:

* the input is split on whitespace (a string) or taken item by item (an
  iterable of strings, each of which may itself hold several scopes);
* a URI scope (``https://graph.microsoft.com/.default``,
  ``api://<app id>/.default``, ``https://x/Files.Read``) has its scheme and
  host lower-cased (Entra compares resource URIs case-insensitively) and a
  trailing ``/.default`` lower-cased; the rest of the path keeps its case;
* a short delegated scope (``User.Read``) keeps the caller's spelling: Entra
  matches scope names case-insensitively, but other tools (and the emulator)
  print and compare them in their canonical spelling, so rewriting them would
  only surprise. Duplicates are detected case-insensitively (the first
  spelling wins) and sorting is case-insensitive, so ``User.Read user.read``
  becomes one scope;
* the result is sorted and deduplicated; an empty result is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from agentid_client.redact import quoted

from ..core.errors import InvalidRequest
from ..core.models import Mode

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
# MSAL adds these to every delegated request itself and refuses them as input.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_DEFAULT_SUFFIX = "/.default"


def _split(value: str | Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, bytes | bytearray):
        raise InvalidRequest("scope must be a string or a list of strings, not bytes")
    try:
        items = list(value)
    except TypeError:
        raise InvalidRequest(
            f"scope must be a string or a list of strings, not {type(value).__name__}"
        ) from None
    parts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidRequest(
                f"scope must be a string or a list of strings; found a {type(item).__name__}"
            )
        parts.extend(item.split())
    return parts


def _normalise_one(scope: str) -> str:
    if not _SCOPE_TOKEN.match(scope):
        raise InvalidRequest(f"invalid character in scope {quoted(scope)}")
    if "://" not in scope:
        if scope.lower().endswith(_DEFAULT_SUFFIX):
            if len(scope) == len(_DEFAULT_SUFFIX):
                raise InvalidRequest(
                    f"scope {quoted(scope)} names no resource: use e.g. "
                    "https://graph.microsoft.com/.default or api://<app id>/.default"
                )
            # "x/.default" without a scheme: Entra resolves it as an app id URI;
            # only the suffix is canonicalised.
            return scope[: -len(_DEFAULT_SUFFIX)] + _DEFAULT_SUFFIX
        return scope
    parts = urlsplit(scope)
    if not parts.scheme or not parts.netloc:
        raise InvalidRequest(f"scope {quoted(scope)} is not a valid resource URI")
    path = parts.path
    if path.lower().endswith(_DEFAULT_SUFFIX):
        path = path[: -len(_DEFAULT_SUFFIX)] + _DEFAULT_SUFFIX
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment)
    )


def normalise_scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    """Return the canonical, sorted, deduplicated scope tuple for ``value``.

    Raises :class:`InvalidRequest` for an empty value, bad characters or a
    malformed resource URI.
    """
    seen: dict[str, str] = {}
    for raw in _split(value):
        scope = _normalise_one(raw)
        seen.setdefault(scope.lower(), scope)
    if not seen:
        raise InvalidRequest("scope is empty: give at least one scope")
    return tuple(seen[k] for k in sorted(seen))


def _resource_of(scope: str) -> str:
    """The resource part of a ``/.default`` scope (used to spot mixed resources)."""
    return scope[: -len(_DEFAULT_SUFFIX)].lower()


def validate_for_mode(scopes: tuple[str, ...], mode: Mode) -> None:
    """Check normalised ``scopes`` against what Entra accepts for ``mode``.

    App-only legs (AutonomousApp) take exactly the ``/.default`` scope of one
    resource: Entra answers AADSTS1002012 for anything else, so we refuse
    before spending a request. Delegated modes (OBO, AutonomousUser) also take
    short scopes such as ``User.Read`` but not the OIDC scopes MSAL adds.
    """
    if not scopes:
        raise InvalidRequest("scope is empty: give at least one scope")
    if mode is Mode.AUTONOMOUS_APP:
        bad = [s for s in scopes if not s.endswith(_DEFAULT_SUFFIX)]
        if bad:
            raise InvalidRequest(
                f"mode AutonomousApp needs a '/.default' scope such as "
                f"'https://graph.microsoft.com/.default', got {quoted(' '.join(bad))} "
                "(Entra would answer AADSTS1002012)",
                hint="app-only tokens carry the app's granted permissions: "
                "ask for '<resource>/.default'",
            )
        resources = {_resource_of(s) for s in scopes}
        if len(resources) > 1:
            raise InvalidRequest(
                "mode AutonomousApp takes the '/.default' scope of exactly one resource, "
                f"got {len(resources)}: {quoted(' '.join(scopes))}"
            )
        return
    reserved = [s for s in scopes if s.lower() in RESERVED_SCOPES]
    if reserved:
        raise InvalidRequest(
            f"scope {quoted(' '.join(reserved))} is added by the library itself; "
            "ask only for resource scopes"
        )
