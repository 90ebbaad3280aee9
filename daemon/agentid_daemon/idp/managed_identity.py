"""A managed identity as the blueprint's credential (``{ managed_identity = ... }``).

Microsoft's guidance for agent blueprints on Azure is a managed identity, not
a secret: the blueprint has a federated credential trusting the managed
identity, and T1 is requested with the managed identity's token for
``api://AzureADTokenExchange`` as its ``client_assertion``.

MSAL's :class:`msal.ManagedIdentityClient` gets that token, from whatever
source it detects in the daemon's environment, exactly as MSAL does for any
app (IMDS on a VM or AKS node, App Service / Functions, Azure Arc, Azure ML,
Service Fabric). The token is a cache entry of its own
(:class:`~.managed_identity_key.ManagedIdentityKey`, one per managed identity, shared by every
blueprint and agent that names it), refreshed ahead of expiry like T1, so a
T1 refresh does not cost a managed identity request while the token is good.
As with the confidential-client legs, MSAL never answers from its own cache
(:class:`~.engine_http.NoStoreTokenCache`) nor replays an error from its
throttling memory (:class:`~.engine_http.NeverStoreMapping`): the daemon owns
caching and refresh timing.

Sync: :class:`ManagedIdentitySource` runs in the engine's worker threads.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msal
import requests

from ..core.errors import ConfigurationError, IdentityProviderError
from ..core.models import AcquiredToken, CredentialSpec
from .managed_identity_key import LEG
from .msal_http import NeverStoreMapping, NoStoreTokenCache, ProviderSession
from .results import (
    error_from_result,
    http_error,
    network_reason,
    provider_label,
    token_from_result,
)

# The resource (v1 style; the managed identity protocols take a resource, not a
# scope) of a token that Entra accepts as a federated client assertion.
EXCHANGE_RESOURCE = "api://AzureADTokenExchange"
SYSTEM = "system"
# How CredentialSpec.location names a user-assigned identity: "<kind>=<id>".
ID_KINDS = ("client_id", "object_id", "resource_id")


def msal_identity(location: str) -> Any:
    """``system`` or ``client_id=...``/``object_id=...``/``resource_id=...`` -> MSAL's form."""
    if location == SYSTEM:
        return msal.SystemAssignedManagedIdentity()
    kind, sep, ident = location.partition("=")
    if not sep or kind not in ID_KINDS or not ident:
        raise ConfigurationError(f"managed identity {location!r} is not one MSAL can use")
    return msal.UserAssignedManagedIdentity(**{kind: ident})


class ManagedIdentitySource:
    """Tokens of managed identities through MSAL; one client per identity."""

    def __init__(self, *, connect_timeout_s: float = 5.0, read_timeout_s: float = 30.0) -> None:
        # The managed identity endpoints are local (link-local IMDS, loopback
        # App Service/Arc): no proxy from the environment, no CA override.
        self._session = ProviderSession(
            connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
        )
        self._session.trust_env = False
        self._lock = threading.Lock()
        self._clients: dict[str, msal.ManagedIdentityClient] = {}

    def acquire(self, spec: CredentialSpec) -> AcquiredToken:
        """One request for the managed identity's ``api://AzureADTokenExchange`` token."""
        if spec.kind != "managed_identity":
            raise ValueError(f"not a managed identity credential: {spec.kind}")
        client = self._client(spec.location)
        session = self._session
        session.reset_last()
        sent = time.time()
        try:
            result = client.acquire_token_for_client(resource=EXCHANGE_RESOURCE)
        except msal.ManagedIdentityError as exc:
            raise ConfigurationError(
                f"{LEG}: {spec.location}: {exc}",
                hint="check blueprint_credential's managed identity and the host's "
                "managed identity configuration",
            ) from None
        except requests.Timeout:
            raise IdentityProviderError(
                f"{provider_label(LEG, session.origin)} unreachable: timed out",
                transient=True,
                leg=LEG,
            ) from None
        except requests.RequestException as exc:
            raise IdentityProviderError(
                f"{provider_label(LEG, session.origin)} unreachable: {network_reason(exc)}; "
                "is this host's managed identity enabled?",
                transient=True,
                leg=LEG,
            ) from None
        except ValueError:
            # MSAL parses the body as JSON: a non-JSON answer.
            raise http_error(
                LEG, session.last, "answered without JSON", origin=session.origin
            ) from None
        if not isinstance(result, dict):
            raise IdentityProviderError(f"{LEG}: no response from MSAL", transient=True, leg=LEG)
        if "access_token" in result:
            return token_from_result(LEG, result, sent, [EXCHANGE_RESOURCE])
        raise error_from_result(LEG, result, session.last, origin=session.origin)

    def _client(self, location: str) -> msal.ManagedIdentityClient:
        with self._lock:
            client = self._clients.get(location)
            if client is None:
                client = msal.ManagedIdentityClient(
                    msal_identity(location),
                    http_client=self._session,
                    token_cache=NoStoreTokenCache(),
                    http_cache=NeverStoreMapping(),
                )
                self._clients[location] = client
            return client

    def close(self) -> None:
        self._session.close()
