"""Configuration the Agent ID sidecar's way: ``AzureAd__*``, ``DownstreamApis__*``, ``Sidecar__*``.

Microsoft's "Entra SDK for AgentID" container (AzureAD/microsoft-identity-web,
``src/Microsoft.Identity.Web.Sidecar``) reads ASP.NET Core configuration:
``appsettings.json`` sections that environment variables override with ``__``
between the levels (``AzureAd__ClientId``, ``DownstreamApis__Graph__Scopes__0``).
Apps and manifests written for it set those variables; this module reads
them so the same manifest configures this daemon:

- ``AzureAd__Instance|TenantId|ClientId`` plus one
  ``AzureAd__ClientCredentials__0__SourceType`` (with its fields) become a
  profile named :data:`PROFILE_NAME` (``ClientId`` is the agent identity
  blueprint: Program.cs's ``AddMicrosoftIdentityWebApi`` and
  ``AddAgentIdentities``), mapped onto :class:`~.values.Profile`;
- ``AzureAd__Audience|Scopes`` are what ``GET /Validate`` and the
  authenticated routes check (Endpoints/ValidateRequestEndpoints.cs);
- ``DownstreamApis__<Name>__BaseUrl|Scopes__N|RelativePath|HttpMethod|
  RequestAppToken|ContentType|AcceptHeader`` are the APIs the sidecar serves
  (Id.Web's ``DownstreamApiOptions``, bound in Program.cs's
  ``AddDownstreamApis``);
- ``Sidecar__AllowOverrides__*`` with Configuration/SidecarOptions.cs's
  defaults (true on the authenticated routes, false on the unauthenticated ones).

.NET configuration keys are case-insensitive, so the names here are too.
Anything this daemon cannot honour (another credential source, more than one
credential, ``Sidecar__AllowOutboundRedirects=true``, a key it does not know)
is a :class:`ConfigurationError`: one line naming the variable, exit 5.
Secret values are never copied: a client secret stays in its environment
variable and is read from there when used (credential kind ``env``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agentid_client.redact import quoted

from ..core.errors import ConfigurationError
from ..core.models import CredentialSpec
from . import fields as F
from .values import Profile, did_you_mean, managed_identity_location

#: The profile the ``AzureAd__*`` variables make (``get --profile sidecar``).
PROFILE_NAME = "sidecar"

_SECTIONS = ("azuread", "downstreamapis", "sidecar")
_AZUREAD_KEYS = ("Instance", "TenantId", "ClientId", "Audience", "Scopes")
_API_KEYS = (
    "BaseUrl",
    "Scopes",
    "RelativePath",
    "HttpMethod",
    "RequestAppToken",
    "ContentType",
    "AcceptHeader",
)
# Configuration/SidecarOptions.cs: AllowOverridesOptions and its defaults.
ALLOW_OVERRIDES_DEFAULTS: dict[str, bool] = {
    "GetAuthorizationHeader": True,
    "GetAuthorizationHeaderUnauthenticated": False,
    "CallDownstreamApi": True,
    "CallDownstreamApiUnauthenticated": False,
}
# Id.Web's CredentialSource values this daemon maps onto blueprint_credential,
# with the CredentialDescription fields each one reads.
_SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "ClientSecret": ("ClientSecret",),
    "SignedAssertionFilePath": ("SignedAssertionFileDiskPath",),
    "SignedAssertionFromManagedIdentity": ("ManagedIdentityClientId", "TokenExchangeUrl"),
    "Path": ("CertificateDiskPath", "CertificatePassword"),
}
_EXCHANGE_URL = "api://AzureADTokenExchange"
_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_API_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DownstreamApi:
    """One ``DownstreamApis__<Name>`` section (Id.Web's ``DownstreamApiOptions`` subset).

    Defaults are ``DownstreamApiOptions``'s: ``HttpMethod`` GET, JSON content
    and accept types, delegated (not app) tokens.
    """

    name: str
    base_url: str | None = None
    scopes: tuple[str, ...] = ()
    relative_path: str = ""
    http_method: str = "GET"
    request_app_token: bool = False
    content_type: str = "application/json"
    accept_header: str = "application/json"


@dataclass(frozen=True)
class SidecarEnv:
    """What the sidecar-style variables configure (all empty when none is set)."""

    profile: Profile | None = None
    audience: str | None = None
    # AzureAd__Scopes: space-separated, any one of them accepted (Id.Web's
    # VerifyUserHasAnyAcceptedScope).
    required_scopes: tuple[str, ...] = ()
    downstream_apis: Mapping[str, DownstreamApi] = field(default_factory=dict)
    allow_overrides: Mapping[str, bool] = field(
        default_factory=lambda: dict(ALLOW_OVERRIDES_DEFAULTS)
    )

    @property
    def configured(self) -> bool:
        return self.profile is not None or bool(self.downstream_apis)


def _error(variable: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"environment variable {variable}: {why}")


def _bool(variable: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise _error(variable, f"must be true or false, not {quoted(value)}")


def _canonical(name: str, known: tuple[str, ...], variable: str) -> str:
    for candidate in known:
        if candidate.lower() == name.lower():
            return candidate
    raise _error(
        variable,
        f"unknown key {quoted(name)}{did_you_mean(name, known)}; this daemon supports "
        + ", ".join(known),
    )


def _index(variable: str, text: str) -> int:
    if not text.isdigit() or len(text) > 3:
        raise _error(variable, f"{quoted(text)} is not an array index (0, 1, ...)")
    return int(text)


def _list(items: dict[int, tuple[str, str]]) -> tuple[str, ...]:
    return tuple(value.strip() for _, (_, value) in sorted(items.items()) if value.strip())


def load_sidecar_env(environ: Mapping[str, str]) -> SidecarEnv:
    """Read the sidecar-style variables of *environ* (ConfigurationError if unsupported)."""
    azuread: dict[str, tuple[str, str]] = {}
    azuread_scopes: dict[int, tuple[str, str]] = {}
    credentials: dict[int, dict[str, tuple[str, str]]] = {}
    apis: dict[str, dict[str, tuple[str, str]]] = {}
    api_scopes: dict[str, dict[int, tuple[str, str]]] = {}
    allow = dict(ALLOW_OVERRIDES_DEFAULTS)
    for variable in sorted(environ):
        parts = variable.split("__")
        section = parts[0].lower()
        if section not in _SECTIONS or len(parts) < 2:
            continue
        value = environ[variable]
        if section == "azuread":
            if parts[1].lower() == "clientcredentials":
                if len(parts) != 4:
                    raise _error(variable, "use AzureAd__ClientCredentials__N__FIELD")
                index = _index(variable, parts[2])
                credentials.setdefault(index, {})[parts[3].lower()] = (variable, value)
                continue
            name = _canonical(parts[1], _AZUREAD_KEYS, variable)
            if name == "Scopes" and len(parts) == 3:
                azuread_scopes[_index(variable, parts[2])] = (variable, value)
            elif len(parts) != 2:
                raise _error(variable, f"AzureAd__{name} takes no sub-key")
            else:
                azuread[name] = (variable, value)
        elif section == "downstreamapis":
            if len(parts) < 3:
                raise _error(variable, "use DownstreamApis__<Name>__KEY")
            api = parts[1]
            if not _API_NAME_RE.match(api):
                raise _error(variable, f"{quoted(api)} is not an API name (letters, digits, _.-)")
            key = _canonical(parts[2], _API_KEYS, variable)
            if key == "Scopes" and len(parts) == 4:
                api_scopes.setdefault(api, {})[_index(variable, parts[3])] = (variable, value)
            elif len(parts) != 3:
                raise _error(variable, f"DownstreamApis__{api}__{key} takes no sub-key")
            else:
                apis.setdefault(api, {})[key] = (variable, value)
        else:  # sidecar
            key = parts[1].lower()
            if key == "allowoverrides" and len(parts) == 3:
                route = _canonical(parts[2], tuple(ALLOW_OVERRIDES_DEFAULTS), variable)
                allow[route] = _bool(variable, value)
            elif key == "allowoutboundredirects" and len(parts) == 2:
                # Program.cs: redirects are off unless this is true (1.1.0, #3906).
                # This daemon never follows them: a token must not travel elsewhere.
                if _bool(variable, value):
                    raise _error(variable, "true is not supported: redirects are never followed")
            else:
                raise _error(
                    variable,
                    "unknown key; this daemon supports Sidecar__AllowOverrides__{"
                    + ",".join(ALLOW_OVERRIDES_DEFAULTS)
                    + "} and Sidecar__AllowOutboundRedirects=false",
                )
    for api in api_scopes:
        apis.setdefault(api, {})
    return SidecarEnv(
        profile=_profile(azuread, credentials),
        audience=_audience(azuread),
        required_scopes=_required_scopes(azuread, azuread_scopes),
        downstream_apis={
            name: _downstream_api(name, body, api_scopes.get(name, {}))
            for name, body in sorted(apis.items())
        },
        allow_overrides=allow,
    )


def _checked(variable: str, check: Any, value: str) -> Any:
    try:
        return check(value.strip())
    except ValueError as exc:
        raise _error(variable, str(exc)) from None


def _profile(
    azuread: dict[str, tuple[str, str]], credentials: dict[int, dict[str, tuple[str, str]]]
) -> Profile | None:
    ids = {k: azuread[k] for k in ("Instance", "TenantId", "ClientId") if k in azuread}
    if not ids and not credentials:
        return None
    values: dict[str, Any] = {}
    if "Instance" in ids:
        variable, instance = ids["Instance"]
        # appsettings.json writes "https://login.microsoftonline.com/": the host only.
        values["authority_host"] = _checked(variable, F.authority_host, instance.rstrip("/"))
    if "TenantId" in ids:
        values["tenant_id"] = _checked(ids["TenantId"][0], F.tenant, ids["TenantId"][1])
    if "ClientId" in ids:
        values["blueprint_app_id"] = _checked(ids["ClientId"][0], F.guid, ids["ClientId"][1])
    if credentials:
        values["blueprint_credential"] = _credential(credentials)
    return Profile(**values)


def _credential(credentials: dict[int, dict[str, tuple[str, str]]]) -> CredentialSpec:
    if len(credentials) != 1 or 0 not in credentials:
        raise ConfigurationError(
            "environment variables AzureAd__ClientCredentials__N: exactly one credential "
            "(index 0) is supported; Id.Web's fallback to the next one is not"
        )
    entry = credentials[0]
    if "sourcetype" not in entry:
        raise ConfigurationError(
            "environment variable AzureAd__ClientCredentials__0__SourceType is missing"
        )
    variable, source_text = entry.pop("sourcetype")
    source = next((s for s in _SOURCE_FIELDS if s.lower() == source_text.strip().lower()), None)
    if source is None:
        raise _error(
            variable,
            f"SourceType {quoted(source_text)} is not supported; use one of "
            + ", ".join(_SOURCE_FIELDS),
        )
    allowed = {f.lower(): f for f in _SOURCE_FIELDS[source]}
    for key, (var, _) in entry.items():
        if key not in allowed:
            raise _error(
                var,
                f"{source} takes "
                + (", ".join(_SOURCE_FIELDS[source]) or "no other field")
                + did_you_mean(key, list(allowed)),
            )

    def get(name: str) -> tuple[str, str] | None:
        found = entry.get(name.lower())
        return found if found is not None and found[1].strip() else None

    if source == "ClientSecret":
        secret = get("ClientSecret")
        if secret is None:
            raise ConfigurationError(
                "environment variable AzureAd__ClientCredentials__0__ClientSecret is missing"
            )
        # The value stays in the environment; the credential reader takes it from there.
        return CredentialSpec("env", secret[0])
    if source == "SignedAssertionFilePath":
        path = get("SignedAssertionFileDiskPath")
        if path is None:
            # Id.Web's default: the AKS workload identity webhook's token file.
            return CredentialSpec("workload_identity", "")
        return CredentialSpec("federated_token_file", path[1].strip())
    if source == "SignedAssertionFromManagedIdentity":
        url = get("TokenExchangeUrl")
        if url is not None and url[1].strip().rstrip("/") != _EXCHANGE_URL:
            raise _error(url[0], f"only {_EXCHANGE_URL} is supported")
        client = get("ManagedIdentityClientId")
        location = "system" if client is None else client[1]
        try:
            return CredentialSpec("managed_identity", managed_identity_location(location))
        except ValueError as exc:
            raise _error(client[0] if client else variable, str(exc)) from None
    # Path: a certificate file on disk.
    password = get("CertificatePassword")
    if password is not None:
        raise _error(
            password[0],
            "password-protected certificates are not supported; give a PEM file holding "
            "the private key and the certificate",
        )
    path = get("CertificateDiskPath")
    if path is None:
        raise ConfigurationError(
            "environment variable AzureAd__ClientCredentials__0__CertificateDiskPath is missing"
        )
    return CredentialSpec("certificate_file", path[1].strip())


def _audience(azuread: dict[str, tuple[str, str]]) -> str | None:
    if "Audience" not in azuread:
        return None
    variable, value = azuread["Audience"]
    if not value.strip():
        raise _error(variable, "must not be empty")
    return value.strip()


def _required_scopes(
    azuread: dict[str, tuple[str, str]], listed: dict[int, tuple[str, str]]
) -> tuple[str, ...]:
    scopes: list[str] = []
    if "Scopes" in azuread:
        scopes.extend(azuread["Scopes"][1].split())
    scopes.extend(s for item in _list(listed) for s in item.split())
    return tuple(scopes)


def _downstream_api(
    name: str, body: dict[str, tuple[str, str]], scopes: dict[int, tuple[str, str]]
) -> DownstreamApi:
    values: dict[str, Any] = {"name": name}
    listed = list(_list(scopes))
    if "Scopes" in body:
        listed = body["Scopes"][1].split() + listed
    values["scopes"] = tuple(listed)
    if "BaseUrl" in body:
        variable, url = body["BaseUrl"]
        parts = urlsplit(url.strip())
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise _error(variable, f"{quoted(url)} must be an https:// URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise _error(variable, f"{quoted(url)} must have no user, query or fragment")
        values["base_url"] = url.strip()
    if "RelativePath" in body:
        values["relative_path"] = body["RelativePath"][1].strip()
    if "HttpMethod" in body:
        variable, method = body["HttpMethod"]
        if method.strip().upper() not in _HTTP_METHODS:
            raise _error(variable, f"{quoted(method)} is not one of {', '.join(_HTTP_METHODS)}")
        values["http_method"] = method.strip().upper()
    if "RequestAppToken" in body:
        values["request_app_token"] = _bool(*body["RequestAppToken"])
    for key, attr in (("ContentType", "content_type"), ("AcceptHeader", "accept_header")):
        if key in body:
            values[attr] = body[key][1].strip()
    return DownstreamApi(**values)


def http_method(value: str) -> str:
    """An ``optionsOverride.HttpMethod`` value, upper-cased (ValueError if unknown)."""
    method = value.strip().upper()
    if method not in _HTTP_METHODS:
        raise ValueError(f"HttpMethod {quoted(value)} is not one of {', '.join(_HTTP_METHODS)}")
    return method
