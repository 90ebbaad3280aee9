"""MSAL results -> :class:`AcquiredToken` or :class:`IdentityProviderError`.

Transient (a retry may fix it: HTTP 429/5xx, ``temporarily_unavailable``,
``server_error``, the AADSTS codes in :data:`TRANSIENT_AADSTS`) versus
permanent (invalid_client, invalid_grant, consent...). Messages keep the first
line of Entra's description minus its trace block, with anything shaped like
a JWT removed; secrets never reach them (MSAL's results carry none).
:func:`guard_call` does the same for what an MSAL call raises (timeouts, TLS,
connection failures, HTTP 5xx, a body that is not JSON).
"""

from __future__ import annotations

import email.utils
import re
import socket
import time
from collections.abc import Callable
from http.client import RemoteDisconnected
from typing import Any

import requests
from msal.exceptions import MsalServiceError

from ..config.scopes import RESERVED_SCOPES
from ..core.errors import IdentityProviderError, clip_at_word
from ..core.models import AcquiredToken
from .hints import hint_for
from .msal_http import ProviderSession, url_origin

# AADSTS codes a retry may fix (service-side hiccups and throttling).
TRANSIENT_AADSTS = frozenset({90033, 90055, 50196, 80001, 80002, 80005})
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_AADSTS_RE = re.compile(r"AADSTS(\d{4,9})")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_MAX_DESCRIPTION = 300


def http_error(
    leg: str, last: Any, what: str, *, origin: str | None = None
) -> IdentityProviderError:
    status = last.status if last is not None else None
    return IdentityProviderError(
        f"{provider_label(leg, origin)} {what}" + (f" (HTTP {status})" if status else ""),
        transient=status is None or status == 429 or status >= 500,
        correlation_id=last.correlation_id if last is not None else None,
        retry_after_s=parse_retry_after(last.retry_after) if last is not None else None,
        leg=leg,
        status=status,
    )


def token_from_result(
    leg: str, result: dict[str, Any], sent: float, scopes: list[str]
) -> AcquiredToken:
    """Map a successful MSAL result; durations are relative to ``sent``."""
    try:
        expires_in = float(result.get("expires_in") or 0)
    except (TypeError, ValueError):
        expires_in = 0.0
    if expires_in <= 0:
        raise IdentityProviderError(
            f"{leg}: the token response has no valid expires_in", transient=True, leg=leg
        )
    refresh_in: float | None = None
    if result.get("refresh_on"):  # MSAL turns the response's refresh_in into refresh_on
        refresh_in = max(0.0, float(result["refresh_on"]) - sent)
    granted = str(result.get("scope") or " ".join(scopes)).split()
    # MSAL adds openid/profile/offline_access to delegated requests; they are
    # not what the caller asked for, so they are not reported back.
    asked = {s.lower() for s in scopes}
    granted = [s for s in granted if s.lower() not in RESERVED_SCOPES or s.lower() in asked]
    return AcquiredToken(
        access_token=result["access_token"],
        expires_in=expires_in,
        refresh_in=refresh_in,
        scope=" ".join(granted),
        token_type=str(result.get("token_type") or "Bearer"),
        # OBO answers carry one (MSAL asks offline_access); the daemon's no-store
        # MSAL cache drops it, so it is taken from the result here.
        refresh_token=result.get("refresh_token") or None,
    )


def discovery_error(leg: str, authority: str, last: Any) -> IdentityProviderError:
    """Authority discovery refused (4xx): Entra's own error when its body says
    (AADSTS90002 for a tenant it does not know), else the bare status."""
    what = f"authority discovery at {authority} failed"
    if last.error:
        return error_from_result(leg, last.error, last, what=what)
    return IdentityProviderError(
        f"{leg}: {what} (HTTP {last.status})",
        leg=leg,
        status=last.status,
        correlation_id=last.correlation_id,
        hint="check tenant_id and authority_host",
    )


def error_from_result(
    leg: str, result: dict[str, Any], last: Any, *, what: str = "", origin: str | None = None
) -> IdentityProviderError:
    """An OAuth error answer; a server-side one (HTTP 5xx, 429) names the
    identity provider's address, a refusal its error and AADSTS codes."""
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "")
    codes: list[int] = []
    for code in result.get("error_codes") or []:
        if isinstance(code, int) and code not in codes:
            codes.append(code)
    for match in _AADSTS_RE.finditer(description):
        code = int(match.group(1))
        if code not in codes:
            codes.append(code)
    status = last.status if last is not None else None
    correlation_id = result.get("correlation_id") or (last.correlation_id if last else None)
    transient = (
        (status is not None and (status == 429 or status >= 500))
        or error in TRANSIENT_ERRORS
        or any(c in TRANSIENT_AADSTS for c in codes)
    )
    first_line = description.strip().splitlines()[0] if description.strip() else ""
    # Entra appends "Trace ID: ... Correlation ID: ... Timestamp: ..." (the
    # correlation id is reported on its own).
    first_line = redact(first_line.split(" Trace ID:", 1)[0].strip())
    first_line = clip_at_word(first_line, _MAX_DESCRIPTION)
    message = f"{leg}: " + (f"{what}: " if what else "") + error
    if status is not None and (status == 429 or status >= 500):
        message = (
            f"{provider_label(leg, origin)} answered HTTP {status}: "
            + (f"{what}: " if what else "")
            + error
        )
    message += f": {first_line}" if first_line else ""
    return IdentityProviderError(
        message,
        transient=transient,
        aadsts_codes=tuple(codes),
        correlation_id=str(correlation_id) if correlation_id else None,
        hint=hint_for(codes),
        retry_after_s=parse_retry_after(last.retry_after) if last is not None else None,
        leg=leg,
        status=status,
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), 3600.0)


def redact(text: str) -> str:
    """Remove anything shaped like a JWT from identity-provider text."""
    return _JWT_RE.sub("[redacted]", text)


def guard_call(
    leg: str,
    session: ProviderSession,
    call: Callable[[], Any],
    *,
    discovery: str | None = None,
    authority: str | None = None,
) -> Any:
    """Run an MSAL call, mapping network failures and HTTP 5xx to transient errors.

    Each message names the identity provider's address and the leg
    (:func:`provider_label`): the request's own origin when one was sent, else
    ``authority`` (or ``discovery``), the address the call was about to use.
    """
    session.reset_last()
    try:
        return call()
    except requests.Timeout:
        where = provider_label(leg, session.origin or discovery or authority, discovery)
        raise IdentityProviderError(
            f"{where} unreachable: timed out", transient=True, leg=leg
        ) from None
    except requests.exceptions.SSLError:
        where = provider_label(leg, session.origin or discovery or authority, discovery)
        raise IdentityProviderError(
            f"{where}: TLS verification failed (check ca_bundle)",
            transient=False,
            leg=leg,
            hint="set ca_bundle to the CA that signed the identity provider's certificate",
        ) from None
    except requests.ConnectionError as exc:
        where = provider_label(leg, session.origin or discovery or authority, discovery)
        raise IdentityProviderError(
            f"{where} unreachable: {network_reason(exc)}", transient=True, leg=leg
        ) from None
    except requests.RequestException as exc:
        where = provider_label(leg, session.origin or discovery or authority, discovery)
        raise IdentityProviderError(
            f"{where}: HTTP error ({type(exc).__name__})", transient=True, leg=leg
        ) from None
    except MsalServiceError:
        # MSAL raises this for HTTP >= 500 without reading the body.
        raise http_error(leg, session.last, "server error", origin=session.origin) from None
    except ValueError:
        last = session.last
        if last is None:
            raise  # MSAL's own argument checks: a programming error
        where = provider_label(leg, session.origin or discovery or authority, discovery)
        if last.status < 400:
            raise IdentityProviderError(
                f"{where}: unreadable response (HTTP {last.status})",
                transient=True,
                leg=leg,
                status=last.status,
            ) from None
        if discovery and last.status < 500 and last.status != 429:
            raise discovery_error(leg, discovery, last) from None
        # A non-JSON error body (a proxy's 429/502 page, for instance).
        raise http_error(leg, last, "non-JSON error response", origin=session.origin) from None


# What each leg is, in the words of the agent identity docs
# (docs/agent-id/identity-platform/: agent-token-claims, autonomous-agent-request-tokens,
# agent-on-behalf-of-oauth-flow, agent-user-oauth-flow).
LEG_LABELS = {
    "t1": "T1 blueprint exchange",
    "t2": "T2 agent user exchange",
    "autonomous_app": "autonomous app token",
    "obo": "on-behalf-of token",
    "obo_refresh": "on-behalf-of refresh",
    "user_fic": "agent user token",
    "managed_identity": "managed identity token",
    "blueprint_app": "blueprint's own app token (Microsoft Graph provisioning)",
}


def provider_label(leg: str, origin: str | None, discovery: str | None = None) -> str:
    """``identity provider https://host (T1 blueprint exchange)``: where a leg went.

    Only an origin (scheme, host, port: engine_http.url_origin) is ever named:
    never a path, query or header.
    """
    what = LEG_LABELS.get(leg, leg)
    if discovery:
        what += ", authority discovery"
    address = url_origin(origin) if origin else None
    if leg == "managed_identity":
        return f"managed identity endpoint {address or '(not detected)'} ({what})"
    return f"identity provider {address or '(unknown address)'} ({what})"


def network_reason(exc: BaseException) -> str:
    """Why a connection failed, in fixed words (the exception's own text may carry
    URLs with paths and queries): the first recognised cause in its chain."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, RemoteDisconnected | ConnectionResetError | ConnectionAbortedError):
            return "the connection was closed without an answer"
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror).lower()
        nested = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return f"cannot connect ({type(exc).__name__})"
