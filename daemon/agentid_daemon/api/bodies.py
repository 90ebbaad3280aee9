"""Request bodies of the daemon's API: JSON objects, their fields and types.

Strict and value-blind: a body must be a JSON object with known keys of the
right JSON types; the values themselves (GUIDs, modes, scopes, users) are
validated by ``Config.resolve``. Errors are :class:`InvalidRequest` and never
echo a body (it may hold a token).
"""

from __future__ import annotations

import json
from typing import Any

from agentid_client.contract import DEFAULT_MIN_VALIDITY_S, MAX_MIN_VALIDITY_S, min_validity_ok
from agentid_client.formats import rfc3339
from agentid_client.redact import quoted

from ..config.claims import normalise_claims
from ..config.fields import user_token_expiry
from ..config.loader import LIST_REQUEST_KEYS, REQUEST_KEYS, Config
from ..core.errors import InvalidRequest
from ..core.models import TokenRequest

# The request's selection fields are exactly what Config.resolve() accepts.
SELECTION_FIELDS = REQUEST_KEYS


def parse_json_object(body: bytes, *, allow_empty: bool) -> dict[str, Any]:
    """Decode a request body that must be a JSON object (or empty when allowed)."""
    if not body.strip():
        if allow_empty:
            return {}
        raise InvalidRequest("request body must be a JSON object")
    try:
        value = json.loads(body)
    except RecursionError:  # "[[[[...": nesting deeper than the interpreter's stack
        raise InvalidRequest("request body is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid JSON (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        # The message names the position only: never echo the body (it may hold a token).
        raise InvalidRequest(f"request body is not valid JSON at position {exc.pos}") from None
    except ValueError:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise InvalidRequest(
            "request body holds a value that cannot be parsed (a number with too many digits?)"
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def selection_fields(obj: dict[str, Any], *, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check keys and types of the selection fields; nulls mean "not given"."""
    unknown = sorted(k for k in obj if k not in SELECTION_FIELDS and k not in extra)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(quoted(k) for k in unknown)}; "
            f"expected some of: {', '.join(SELECTION_FIELDS + extra)}"
        )
    fields: dict[str, Any] = {}
    for key in SELECTION_FIELDS:
        if key not in obj or obj[key] is None:
            continue
        value = obj[key]
        if key in LIST_REQUEST_KEYS and isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise InvalidRequest(f"field {key!r} must be a string or an array of strings")
            for item in value:
                _require_unicode(key, item)
        elif not isinstance(value, str):
            raise InvalidRequest(f"field {key!r} must be a string, not {json_type(value)}")
        else:
            _require_unicode(key, value)
        fields[key] = value
    return fields


def _require_unicode(key: str, value: str) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``); nothing downstream can encode them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"field {key!r} is not valid Unicode (a lone surrogate)") from None


def refuse_expired_user_token(fields: dict[str, Any], now: float) -> None:
    """An OBO user token past its ``exp`` is refused before any cache lookup (exit 2)."""
    token = fields.get("user_token")
    if not isinstance(token, str):
        return
    exp = user_token_expiry(token.strip())
    if exp is not None and exp <= now:
        when = rfc3339(exp)
        raise InvalidRequest(
            f"the user token expired at {when} (its exp claim)",
            hint="get a fresh token for the user (sign in again) and retry",
        )


def resolve(
    config: Config, fields: dict[str, Any], *, need_user_token: bool = True
) -> TokenRequest:
    """``config.resolve`` with parse errors of any kind as 400 (never a 500).

    ``need_user_token=False`` (dropping tokens): an OBO selection without a
    user token names that key's tokens of every user (``resolve_selection``).
    """
    try:
        if not need_user_token:
            return config.resolve_selection(fields)
        return config.resolve(fields)
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequest(f"request fields cannot be used ({type(exc).__name__})") from None


def token_options(obj: dict[str, Any]) -> tuple[float, bool]:
    """``min_validity_s`` (``contract.min_validity_ok``, default 300) and ``force_refresh``
    (bool); ``claims`` has :func:`claims_option`."""
    min_validity: Any = obj.get("min_validity_s")
    if min_validity is None:
        min_validity = DEFAULT_MIN_VALIDITY_S
    elif isinstance(min_validity, bool) or not isinstance(min_validity, int | float):
        raise InvalidRequest(
            f"field 'min_validity_s' must be a number, not {json_type(min_validity)}"
        )
    elif not min_validity_ok(min_validity):
        raise InvalidRequest(
            f"field 'min_validity_s' must be between 0 and {MAX_MIN_VALIDITY_S} seconds"
        )
    force = obj.get("force_refresh")
    if force is None:
        force = False
    elif not isinstance(force, bool):
        raise InvalidRequest(f"field 'force_refresh' must be a boolean, not {json_type(force)}")
    return float(min_validity), force


def claims_option(obj: dict[str, Any]) -> str | None:
    """``claims``: a claims challenge, JSON or its base64 form -> compact JSON."""
    value = obj.get("claims")
    if value is None:
        return None
    try:
        return normalise_claims(value)
    except ValueError as exc:
        raise InvalidRequest(f"field 'claims' {exc}") from None


def token_request_options(obj: dict[str, Any], now: float) -> tuple[float, bool, str | None]:
    """What a ``POST /v1/token`` body asks besides its selection, checked in the
    API's order: ``min_validity_s`` and ``force_refresh`` (:func:`token_options`),
    a user token not yet expired at ``now`` (:func:`refuse_expired_user_token`)
    and ``claims`` (:func:`claims_option`)."""
    min_validity_s, force_refresh = token_options(obj)
    refuse_expired_user_token(obj, now)
    return min_validity_s, force_refresh, claims_option(obj)
