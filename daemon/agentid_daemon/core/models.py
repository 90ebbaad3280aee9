"""Immutable values passed between the daemon's layers.

The flow is: API handler -> ``config.resolve()`` makes a :class:`TokenRequest`
-> ``broker.Broker.get_token()`` -> ``cache.TokenCache`` -> ``engine.Engine``
(in a worker thread) returns an :class:`AcquiredToken`.

Anything holding a token or secret hides it from ``repr`` so that a stray log
line or traceback cannot leak it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal


class Mode(enum.StrEnum):
    AUTONOMOUS_APP = "AutonomousApp"
    OBO = "OBO"
    AUTONOMOUS_USER = "AutonomousUser"


#: The agent user of ``AutonomousUser``: one of these, never both.
USER_FIELDS = ("user_upn", "user_object_id")
#: The request fields only one mode takes (Entra's flows: the agent user's
#: FIC needs the user, OBO the signed-in user's token), keyed by that mode.
#: The one statement of which mode takes what: the config loader checks
#: requests against it, the broker every TokenRequest (mode_problem).
MODE_ONLY_FIELDS: dict[Mode, tuple[str, ...]] = {
    Mode.AUTONOMOUS_USER: USER_FIELDS,
    Mode.OBO: ("user_token", "obo_session"),
}


def field_not_for_mode(mode: Mode, given: Iterable[str]) -> str | None:
    """Why one of the fields ``given`` is not valid with ``mode`` (None: all are)."""
    for key in given:
        for owner, fields in MODE_ONLY_FIELDS.items():
            if key in fields and owner is not mode:
                return f"{key} is only valid with mode {owner.value}, not {mode.value}"
    return None


DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
# The user part of the cache key of a long-running OBO session's tokens.
OBO_SESSION_USER_PREFIX = "obo-session:"

CredentialKind = Literal[
    "keyring",
    "secret_file",
    "certificate_file",
    "federated_token_file",
    "env",
    "managed_identity",  # location: "system" or "client_id=..."/"object_id=..."/"resource_id=..."
    "workload_identity",  # AZURE_FEDERATED_TOKEN_FILE, read when used
]


@dataclass(frozen=True)
class CredentialSpec:
    """Where the blueprint's credential comes from (never the value itself).

    ``location`` is a path for the *_file kinds, an environment variable name
    for ``env``, the keyring user (the blueprint app id) for ``keyring``, the
    identity for ``managed_identity`` (``system`` or ``client_id=<id>``,
    ``object_id=<id>``, ``resource_id=<id>``) and empty for
    ``workload_identity``.
    """

    kind: CredentialKind
    location: str


@dataclass(frozen=True)
class AgentRef:
    """One agent identity of one blueprint at one authority: the T1/T2 scope."""

    authority_host: str  # e.g. "https://login.microsoftonline.com", no trailing slash
    tenant_id: str
    blueprint_app_id: str
    agent_identity_app_id: str
    credential: CredentialSpec
    ca_bundle: str | None = None
    # Declared to MSAL (``client_capabilities``) on the agent's resource legs;
    # "cp1" makes CAE-enabled resources issue long-lived, revocable tokens.
    client_capabilities: tuple[str, ...] = ()

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """The part of the ref that names the agent (cache keys use this, not the credential)."""
        return (
            self.authority_host,
            self.tenant_id,
            self.blueprint_app_id,
            self.agent_identity_app_id,
        )


@dataclass(frozen=True)
class TokenRequest:
    """A fully resolved, validated request for one resource token."""

    agent: AgentRef
    mode: Mode
    scopes: tuple[str, ...]  # normalised: sorted, deduplicated, resource URI lower-cased
    profile: str | None = None
    user_upn: str | None = None  # lower-cased
    user_object_id: str | None = None  # lower-cased GUID
    user_token: str | None = field(default=None, repr=False)  # OBO input, never logged
    # A long-running OBO session (obo_sessions.py): its tokens are cached under
    # the session's name, whoever's user token started it.
    obo_session: str | None = None

    def mode_problem(self, *, need_user_token: bool = True) -> str | None:
        """Why this request's mode and user fields do not go together (None: they do).

        ``need_user_token=False`` for a selection that drops tokens: OBO without
        a user token then names that key's tokens of every user.
        """
        values = {
            "user_upn": self.user_upn,
            "user_object_id": self.user_object_id,
            "user_token": self.user_token,
            "obo_session": self.obo_session,
        }
        wrong = field_not_for_mode(self.mode, [k for k, v in values.items() if v is not None])
        if wrong is not None:
            return wrong
        if self.mode is Mode.AUTONOMOUS_USER:
            if self.user_upn and self.user_object_id:
                return "mode AutonomousUser takes user_upn or user_object_id, not both"
            if not (self.user_upn or self.user_object_id):
                return (
                    "mode AutonomousUser needs the agent user: give --user-upn or --user-object-id"
                )
        if (
            self.mode is Mode.OBO
            and need_user_token
            and not self.user_token
            and self.obo_session is None
        ):
            return (
                "mode OBO needs the user's token: give --user-token-file PATH (or - for "
                "stdin), or --obo-session NAME of a session a user token started"
            )
        return None

    @property
    def user_key(self) -> str | None:
        """The cache key's user part: the OBO session, UPN, object id, or SHA-256
        of the OBO user token."""
        if self.mode is Mode.OBO and self.obo_session is not None:
            return OBO_SESSION_USER_PREFIX + self.obo_session
        if self.mode is Mode.OBO and self.user_token is not None:
            return "sha256:" + hashlib.sha256(self.user_token.encode()).hexdigest()
        if self.user_upn:
            return "upn:" + self.user_upn.lower()
        if self.user_object_id:
            return "oid:" + self.user_object_id.lower()
        return None

    @property
    def scope_string(self) -> str:
        return " ".join(self.scopes)

    def cache_key(self) -> ResourceKey:
        return ResourceKey(
            *self.agent.identity,
            self.mode.value,
            self.scopes,
            self.user_key,
            credential=self.agent.credential,
            client_capabilities=self.agent.client_capabilities,
        )


@dataclass(frozen=True)
class ResourceKey:
    """(authority, tenant, blueprint, agent, mode, normalised scopes, user)."""

    authority_host: str
    tenant_id: str
    blueprint_app_id: str
    agent_identity_app_id: str
    mode: str
    scopes: tuple[str, ...]
    user: str | None
    # Two profiles naming one agent with different credential sources are kept
    # apart: an entry's refresh uses the credential of whoever asked last, so a
    # shared entry would let a broken source break (or a working one mask) the other.
    credential: CredentialSpec | None = None
    # Tokens minted for a client declaring capabilities (CAE) differ in kind.
    client_capabilities: tuple[str, ...] = ()

    def describe(self) -> str:
        """A log/status-safe description (the OBO user part is already a hash)."""
        user = self.user
        if user and user.startswith("sha256:"):
            user = user[:19]
        return f"{self.mode} {self.agent_identity_app_id} {' '.join(self.scopes)} user={user}"


@dataclass(frozen=True)
class ExchangeKey:
    """Key of a T1 (``leg='t1'``) or T2 (``leg='t2'``) exchange token of one agent."""

    leg: Literal["t1", "t2"]
    authority_host: str
    tenant_id: str
    blueprint_app_id: str
    agent_identity_app_id: str
    credential: CredentialSpec | None = None  # see ResourceKey.credential


@dataclass(frozen=True)
class AcquiredToken:
    """What the engine got from the identity provider for one leg.

    Durations are relative to the moment the request was sent, so the trio
    side can turn them into trio-clock deadlines without wall-clock math.
    """

    access_token: str = field(repr=False)
    expires_in: float
    refresh_in: float | None = None
    scope: str = ""
    token_type: str = "Bearer"
    # Only the OBO legs carry one; the broker moves it into the OBO session
    # store at once, so cached tokens never hold it.
    refresh_token: str | None = field(default=None, repr=False)
