"""The HTTP plumbing the engine hands to MSAL, each piece defusing one MSAL trap.

* :class:`NoStoreTokenCache`: MSAL's token cache that never stores, so every
  ``acquire_*`` call goes to the identity provider (the daemon owns caching).
* :class:`NeverStoreMapping`: MSAL's ``http_cache``; its throttling wrapper
  replays 429s per URL+client+scope (blind to ``fmi_path``) and exact 400s for
  60 s. The daemon owns backoff, so nothing is remembered.
* :class:`ProviderSession`: a ``requests.Session`` whose configured trust
  (``ca_bundle`` *added* to the system's roots, :class:`TrustStore`) wins over
  ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, with connect/read timeouts, and
  which remembers the last response's status and headers per thread (MSAL
  drops them, but ``Retry-After`` and the correlation id matter), the
  OAuth error fields of an error response (MSAL turns a refused authority
  discovery into a bare ``ValueError``; Entra's body says why, e.g. AADSTS90002),
  and the origin (scheme://host[:port]) of the last request it sent, so that an
  error names where it went even when no response came back.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context

from ..core.errors import ConfigurationError
from ..core.secret_files import MAX_CONFIG_BYTES, read_trusted_file


class NoStoreTokenCache(msal.TokenCache):  # type: ignore[misc]  # msal ships no types
    """An MSAL token cache that drops everything it is given."""

    def add(self, event: dict[str, Any], now: Any = None) -> None:
        return None


class NeverStoreMapping(MutableMapping[str, Any]):
    """A dict-like that forgets every write (MSAL's ``http_cache``)."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        return None

    def __delitem__(self, key: str) -> None:
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# The OAuth error fields kept from an error response (never a token: Entra's
# error bodies carry none, and nothing else is kept).
ERROR_FIELDS = ("error", "error_description", "error_codes", "correlation_id")
MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class ResponseInfo:
    """What MSAL does not pass on: status, the headers we care about, error fields."""

    status: int
    retry_after: str | None = None
    correlation_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    error: dict[str, Any] | None = field(default=None, repr=False)


def error_fields(response: requests.Response) -> dict[str, Any] | None:
    """The OAuth error fields of a JSON error response, or None."""
    if response.status_code < 400 or "json" not in response.headers.get("content-type", ""):
        return None
    raw = response.content
    if len(raw) > MAX_ERROR_BODY:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None
    return {k: body[k] for k in ERROR_FIELDS if k in body}


class TrustAdapter(HTTPAdapter):
    """An adapter whose connections all verify against one ready ``ssl.SSLContext``.

    requests hands urllib3 a CA *file* per connection (``verify=PATH``, or
    certifi's bundle for ``verify=True``) and urllib3 parses it into the
    connection's context every time: ~25 ms for certifi, ~55 ms for system
    roots plus certifi. With the context given here, nothing is parsed per
    connection; :class:`TrustStore` builds it once.
    """

    def __init__(self, trust: ssl.SSLContext, **kwargs: Any) -> None:
        self._trust = trust
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._trust
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._trust
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Verification stays required (the context's own roots decide); no CA
        # file is set on the connection, which urllib3 would load again.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


class ProviderSession(requests.Session):
    """requests Session for the identity provider (see the module docstring).

    ``trust``: the context every connection verifies against (a configured
    ``ca_bundle``, :meth:`TrustStore.context`), which neither
    ``REQUESTS_CA_BUNDLE`` nor ``CURL_CA_BUNDLE`` can replace; None for
    requests' own defaults, the environment's variables included.
    """

    def __init__(
        self,
        *,
        trust: ssl.SSLContext | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        self._trust = trust
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._local = threading.local()
        # One retry of a failed *connection* (urllib3 does not resend a POST
        # whose request went out); everything else is the daemon's backoff.
        adapter = (
            HTTPAdapter(max_retries=1) if trust is None else TrustAdapter(trust, max_retries=1)
        )
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self._trust is not None:
            # requests lets REQUESTS_CA_BUNDLE override Session.verify; the
            # configured ca_bundle must win. Proxies from the environment stay.
            settings["verify"] = True
        return settings

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        self._local.last = None
        self._local.origin = url_origin(url)
        response = super().request(method, url, *args, **kwargs)
        headers = {k.lower(): v for k, v in response.headers.items()}
        self._local.last = ResponseInfo(
            status=response.status_code,
            retry_after=headers.get("retry-after"),
            correlation_id=headers.get("x-ms-correlation-id") or headers.get("client-request-id"),
            headers=headers,
            error=error_fields(response),
        )
        return response

    def reset_last(self) -> None:
        self._local.last = None
        self._local.origin = None

    @property
    def last(self) -> ResponseInfo | None:
        """The last response this thread received, if any."""
        return getattr(self._local, "last", None)

    @property
    def origin(self) -> str | None:
        """scheme://host[:port] of the last request this thread sent (answered or not)."""
        return getattr(self._local, "origin", None)


def url_origin(url: str | bytes) -> str | None:
    """``scheme://host[:port]`` of ``url``: no user info, path or query (which
    may carry a tenant, a resource or a managed identity's id; never needed to
    say where a request went)."""
    text = url.decode("ascii", "replace") if isinstance(url, bytes) else url
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


#: How OpenSSL names a root in a hashed CA directory (``c_rehash``): subject hash, dot, n.
_HASHED_ROOT = re.compile(r"[0-9a-f]{8}\.[0-9]+")


class TrustStore:
    """SSL contexts for the identity provider: the system's roots plus a ``ca_bundle``.

    The configured bundle is *extra* trust (a TLS proxy, the emulator): the
    public roots stay trusted. Those are the system's, as OpenSSL finds them
    (``ssl.get_default_verify_paths``, which ``SSL_CERT_DIR``/``SSL_CERT_FILE``
    override): its hashed CA directory where there is one, which OpenSSL reads
    lazily (only the issuers a handshake needs), else its CA file, else
    certifi's bundle. One context per bundle (path, mtime, size), built once and
    shared by every session and connection, so a new connection parses nothing
    (:class:`TrustAdapter`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, int, int], ssl.SSLContext] = {}

    def context(self, ca_bundle: str) -> ssl.SSLContext:
        # Trusted like the config (file_trust): a CA others can change would let
        # them impersonate the identity provider and receive the credential.
        extra = read_trusted_file(ca_bundle, "ca_bundle", secret=False, max_bytes=MAX_CONFIG_BYTES)
        try:
            st = os.stat(ca_bundle)
        except OSError as exc:
            raise ConfigurationError(
                f"ca_bundle {ca_bundle}: cannot read ({exc.strerror})"
            ) from None
        if b"-----BEGIN CERTIFICATE-----" not in extra:
            raise ConfigurationError(f"ca_bundle {ca_bundle} holds no PEM certificate")
        key = (ca_bundle, st.st_mtime_ns, st.st_size)
        with self._lock:
            existing = self._contexts.get(key)
            if existing is not None:
                return existing
        context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        _load_system_roots(context)
        try:
            context.load_verify_locations(cadata=extra.decode("ascii"))
        except (ssl.SSLError, ValueError):  # UnicodeDecodeError is a ValueError
            raise ConfigurationError(
                f"ca_bundle {ca_bundle} holds a PEM certificate OpenSSL cannot read"
            ) from None
        with self._lock:
            return self._contexts.setdefault(key, context)


def _load_system_roots(context: ssl.SSLContext) -> None:
    """The public roots into ``context`` (see :class:`TrustStore`)."""
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    if capath and os.path.isdir(capath):
        try:
            hashed = any(_HASHED_ROOT.fullmatch(name) for name in os.listdir(capath))
        except OSError:
            hashed = False
        if hashed:
            context.load_verify_locations(capath=capath)
            return
    if paths.cafile and os.path.isfile(paths.cafile):
        context.load_verify_locations(cafile=paths.cafile)
        return
    import certifi

    context.load_verify_locations(cafile=certifi.where())
