"""The downstream call of ``POST /DownstreamApi[Unauthenticated]/{apiName}``.

As Endpoints/DownstreamApiEndpoint.cs (AzureAD/microsoft-identity-web,
``src/Microsoft.Identity.Web.Sidecar``) with Id.Web's ``DownstreamApi``:
the URL is ``BaseUrl`` (configuration only) + ``/`` + ``RelativePath``; the
caller's body is forwarded with the caller's ``Content-Type`` when it sent
one; the answer is ``{"statusCode", "headers", "content"}`` where
``headers`` are the response's *content* headers (``Content-Type``,
``Content-Length``, ...: ``downstreamResult.Content.Headers``) as lists.

This daemon's bounds: HTTPS only, trusting the system roots plus the
profile's ``ca_bundle``; redirects are never followed (Program.cs's default
since 1.1.0, ``AllowOutboundRedirects=false``); a relative path cannot leave
the configured origin; 10 s to connect, 30 s to read, answers up to
:data:`MAX_RESPONSE_BYTES`. Blocking (requests): run in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from ..idp.msal_http import ProviderSession, TrustStore
from .binding import Call
from .problems import Problem

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
# System.Net.Http.Headers.HttpContentHeaders: the headers .NET files under Content.
CONTENT_HEADERS = {
    "allow": "Allow",
    "content-disposition": "Content-Disposition",
    "content-encoding": "Content-Encoding",
    "content-language": "Content-Language",
    "content-length": "Content-Length",
    "content-location": "Content-Location",
    "content-md5": "Content-MD5",
    "content-range": "Content-Range",
    "content-type": "Content-Type",
    "expires": "Expires",
    "last-modified": "Last-Modified",
}


@dataclass(frozen=True)
class Outbound:
    """The request the daemon sends (the token is added at the last moment)."""

    method: str
    url: str
    accept: str
    body: bytes | None
    content_type: str | None


def outbound(call: Call, body: bytes, content_type: str | None) -> Outbound:
    """Where and what to send (Problem 400 when the path leaves the configured origin)."""
    base = call.api.base_url
    if base is None:
        raise Problem(
            400,
            f"the API '{call.api.name}' has no BaseUrl (DownstreamApis__{call.api.name}__BaseUrl)",
        )
    # Id.Web's DownstreamApiOptions.GetApiUrl(): BaseUrl.TrimEnd('/') + "/" + RelativePath.
    url = base.rstrip("/") + "/" + call.relative_path.lstrip("/")
    if not call.relative_path:
        url = base.rstrip("/") + "/"
    if _origin(url) != _origin(base) or any(c in call.relative_path for c in "\r\n\\#"):
        raise Problem(
            400, "optionsOverride.RelativePath must stay below the API's configured BaseUrl"
        )
    forward = body if content_type else None
    return Outbound(call.http_method, url, call.accept_header, forward, content_type)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class Downstream:
    """Sends :class:`Outbound` requests; sessions per ``ca_bundle`` (thread-safe enough:
    requests' Session is shared by worker threads as the engine's are)."""

    def __init__(self, trust: TrustStore | None = None) -> None:
        self._trust = trust or TrustStore()
        self._sessions: dict[str | None, ProviderSession] = {}

    def _session(self, ca_bundle: str | None) -> ProviderSession:
        session = self._sessions.get(ca_bundle)
        if session is None:
            trust = self._trust.context(ca_bundle) if ca_bundle else None
            session = ProviderSession(
                trust=trust, connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S
            )
            session = self._sessions.setdefault(ca_bundle, session)
        return session

    def send(self, request: Outbound, token: str, ca_bundle: str | None) -> dict[str, Any]:
        """The sidecar's DownstreamApiResult for *request* sent with *token*."""
        headers = {"Authorization": f"Bearer {token}", "Accept": request.accept}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        try:
            answer = self._session(ca_bundle).request(
                request.method,
                request.url,
                data=request.body,
                headers=headers,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise Problem(502, f"the downstream API did not answer: {type(exc).__name__}") from None
        try:
            content = _read_bounded(answer)
        finally:
            answer.close()
        result_headers: dict[str, list[str]] = {}
        for name, value in answer.raw.headers.items():
            canonical = CONTENT_HEADERS.get(name.lower())
            if canonical is not None:
                result_headers.setdefault(canonical, []).append(value)
        return {
            "statusCode": answer.status_code,
            "headers": result_headers,
            "content": content.decode(answer.encoding or "utf-8", "replace") if content else None,
        }


def _read_bounded(answer: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in answer.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise Problem(
                    502, f"the downstream API's answer is larger than {MAX_RESPONSE_BYTES} bytes"
                )
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise Problem(502, f"the downstream API's answer broke off: {type(exc).__name__}") from None
    return b"".join(chunks)
