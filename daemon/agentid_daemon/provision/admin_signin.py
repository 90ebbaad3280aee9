"""``init``'s administrator: a delegated Microsoft Graph token, by device code or from a file.

- :func:`sign_in_by_device_code`: MSAL's ``PublicClientApplication``
  (``initiate_device_flow`` / ``acquire_token_by_device_flow``, RFC 8628) for
  the scopes of :data:`ADMIN_SCOPES`; the instructions ("open ... and enter
  the code ...") go to the terminal, the token nowhere but memory.
- :func:`token_from_file`: ``--graph-token-file``, e.g. the output of
  ``az account get-access-token --resource https://graph.microsoft.com``
  (its JSON, or the bare token of ``--query accessToken -o tsv``); the file
  must pass the same trust rules as every credential file.

Either way the token's claims are read **without** verifying its signature:
Graph verifies it on every call; ``init`` only needs to know who signed in
(``oid``: the default sponsor and owner), which tenant (``tid``: the
profile's tenant GUID) and whether the token has expired already.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from ..config.fields import unverified_claims
from ..core.errors import ConfigurationError, IdentityProviderError, InvalidRequest
from ..core.secret_files import MAX_CREDENTIAL_BYTES, read_trusted_file

#: The delegated Graph permissions ``init`` signs in for, as Microsoft's guides
#: name them (MicrosoftDocs/entra-docs docs/agent-id/identity-platform/):
#: create-blueprint.md (``AgentIdentityBlueprint.Create``,
#: ``AgentIdentityBlueprintPrincipal.Create``,
#: ``AgentIdentityBlueprint.AddRemoveCreds.All``),
#: create-delete-agent-identities.md (``AgentIdentity.Create.All``) and
#: agent-users.md (``AgentIdUser.ReadWrite.All``, asked only for an agent user).
ADMIN_PERMISSIONS = (
    "AgentIdentityBlueprint.Create",
    "AgentIdentityBlueprint.AddRemoveCreds.All",
    "AgentIdentityBlueprintPrincipal.Create",
    "AgentIdentity.Create.All",
)
AGENT_USER_PERMISSION = "AgentIdUser.ReadWrite.All"
#: How long ``init`` waits for the administrator to enter the code at most
#: (Entra's device codes live 15 minutes).
DEVICE_CODE_WAIT_S = 15 * 60


@dataclass(frozen=True)
class AdminToken:
    """The administrator's Graph token and who it names (claims not verified)."""

    access_token: str = field(repr=False)
    tenant_id: str | None  # tid
    object_id: str | None  # oid: the default sponsor and owner
    upn: str | None  # upn / preferred_username, for messages
    expires_on: float | None  # exp


def admin_scopes(graph_resource: str, *, agent_user: bool) -> list[str]:
    """The full scope strings (``https://graph.microsoft.com/AgentIdentity.Create.All``...)."""
    names = [*ADMIN_PERMISSIONS, *([AGENT_USER_PERMISSION] if agent_user else [])]
    return [f"{graph_resource}/{name}" for name in names]


def admin_token(access_token: str, *, now: float | None = None) -> AdminToken:
    """:class:`AdminToken` of ``access_token``; InvalidRequest when it is no JWT,
    not a delegated (user) token, or expired."""
    claims = unverified_claims(access_token)  # not verified: see the module docstring
    if not claims:
        raise InvalidRequest(
            "the Graph token is not a JWT access token (an `az account get-access-token "
            "--resource https://graph.microsoft.com` output, or its accessToken)"
        )
    exp = claims.get("exp")
    expires_on = float(exp) if isinstance(exp, int | float) else None
    if expires_on is not None and expires_on <= (time.time() if now is None else now):
        raise InvalidRequest("the Graph token has expired: get a new one and run init again")
    if claims.get("idtyp") == "app" or not claims.get("oid") or "scp" not in claims:
        raise InvalidRequest(
            "the Graph token is not an administrator's delegated token (it has no scp/oid): "
            "init creates the blueprint as a signed-in user"
        )

    def text(*names: str) -> str | None:
        for name in names:
            value = claims.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    return AdminToken(
        access_token=access_token,
        tenant_id=text("tid"),
        object_id=text("oid"),
        upn=text("upn", "preferred_username", "unique_name"),
        expires_on=expires_on,
    )


def token_from_file(path: str) -> AdminToken:
    """``--graph-token-file``: a trusted file (ours, not readable by others) holding
    the token or ``az account get-access-token``'s JSON."""
    raw = read_trusted_file(path, "graph token file", secret=True, max_bytes=MAX_CREDENTIAL_BYTES)
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"graph token file {path} is not UTF-8 text") from None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidRequest(f"graph token file {path} holds invalid JSON") from None
        found = (
            data.get("accessToken") or data.get("access_token") if isinstance(data, dict) else None
        )
        if not isinstance(found, str):
            raise InvalidRequest(
                f"graph token file {path} has no accessToken (az account get-access-token's JSON)"
            )
        text = found.strip()
    return admin_token(text)


def sign_in_by_device_code(
    *,
    authority_host: str,
    tenant: str,
    client_id: str,
    scopes: list[str],
    session: requests.Session,
    show: Callable[[str], None],
    wait_s: float = DEVICE_CODE_WAIT_S,
) -> AdminToken:
    """The administrator signs in on another device; ``show`` gets the instructions."""
    host = authority_host.split("://", 1)[-1].split("/", 1)[0].lower()
    app = msal.PublicClientApplication(
        client_id,
        authority=f"{authority_host}/{tenant}",
        http_client=session,
        # Outside Microsoft's own clouds (a sovereign or test authority), no
        # instance discovery: MSAL would ask login.microsoftonline.com about it.
        instance_discovery=host in WELL_KNOWN_AUTHORITY_HOSTS,
    )
    flow = app.initiate_device_flow(scopes=scopes)
    if "user_code" not in flow:
        raise _refused("start the device code sign-in", flow)
    show(str(flow.get("message") or f"enter the code {flow['user_code']}"))
    flow["expires_at"] = min(float(flow.get("expires_at", 0) or 0) or 1e18, time.time() + wait_s)
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise _refused("sign you in", result)
    return admin_token(str(result["access_token"]))


def _refused(what: str, reply: dict[str, Any]) -> IdentityProviderError:
    """One line from MSAL's error reply (never a token: replies of errors have none)."""
    code = str(reply.get("error") or "error")
    description = " ".join(str(reply.get("error_description") or "").split())[:400]
    return IdentityProviderError(
        f"the identity provider did not {what}: {code}"
        + (f": {description}" if description else ""),
        aadsts_codes=tuple(c for c in reply.get("error_codes") or () if isinstance(c, int)),
        correlation_id=reply.get("correlation_id")
        if isinstance(reply.get("correlation_id"), str)
        else None,
        hint="check --tenant-id and --client-id; the client must be allowed to sign in by "
        "device code (a public client) in this tenant",
    )
