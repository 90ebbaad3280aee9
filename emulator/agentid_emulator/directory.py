"""The emulated directory: tenants, agent identity blueprints (with their
credentials), agent identities, agent users and human users.

Built here: the demo (``--demo``: fixed GUIDs, a known secret); a TOML seed
is read by seed_file.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .certs import thumbprints

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

# Fixed identifiers of the built-in demo directory (--demo).
DEMO_TENANT_ID = "7a3e1c52-4b1d-4e0a-9c61-2f3b5d7e9a10"
DEMO_BLUEPRINT_APP_ID = "b1e2c3d4-0001-4a5b-8c7d-000000000b01"
DEMO_BLUEPRINT_SECRET = "demo-blueprint-secret~not-a-real-secret"
DEMO_AGENT_APP_ID = "a9e8d7c6-0002-4b5a-9d8c-000000000a01"
DEMO_AGENT_USER_UPN = "agent-user@contoso.example"
DEMO_AGENT_USER_OID = "c0ffee00-0003-4c4c-8d8d-000000000c01"
DEMO_USER_UPN = "alice@contoso.example"
DEMO_USER_OID = "a11ce000-0004-4d4d-9e9e-000000000d01"
DEMO_WORKLOAD_SUBJECT = "system:serviceaccount:agents:graph-bot"
DEMO_MI_CLIENT_ID = "3f1e2d3c-0005-4e6f-8a9b-000000000e01"
DEMO_MI_OBJECT_ID = "0b7ec7ed-0006-4f70-9b8c-000000000f01"
DEMO_MI_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/"
    "agentid-demo/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/demo-agent-identity"
)
# The roles of the recorded blueprint Graph token (joetanx/mslab auth-flows.md, 2.1.1).
DEMO_BLUEPRINT_ROLES = ("AgentIdUser.ReadWrite.IdentityParentedBy", "AgentIdentity.CreateAsManager")
# The emulator's own workload-identity issuer path (for federated blueprint credentials).
WORKLOAD_ISSUER_PATH = "/_emulator/workload"


class SeedError(ValueError):
    """The seed file is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audience: str = TOKEN_EXCHANGE_AUDIENCE
    # None: the issuer is the emulator's own workload issuer (signed with its key).
    public_key: rsa.RSAPublicKey | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Blueprint:
    app_id: str
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # x5t or x5t#S256 thumbprint -> certificate public key
    certificates: dict[str, rsa.RSAPublicKey] = field(default_factory=dict, repr=False)
    federated_credentials: tuple[FederatedCredential, ...] = ()
    display_name: str = ""
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentIdentity:
    app_id: str
    blueprint_app_id: str
    roles: tuple[str, ...] = ()
    display_name: str = ""


@dataclass(frozen=True)
class User:
    upn: str
    object_id: str
    display_name: str = ""
    # Set for agent users: the agent identity they belong to.
    agent_identity_app_id: str | None = None


@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity: its tokens come from the IMDS endpoint."""

    client_id: str
    object_id: str
    resource_id: str = ""
    tenant_id: str = ""


@dataclass
class Tenant:
    tenant_id: str
    blueprints: dict[str, Blueprint] = field(default_factory=dict)
    agents: dict[str, AgentIdentity] = field(default_factory=dict)
    users_by_upn: dict[str, User] = field(default_factory=dict)
    users_by_oid: dict[str, User] = field(default_factory=dict)
    managed_identities: list[ManagedIdentity] = field(default_factory=list)

    def add_user(self, user: User) -> None:
        self.users_by_upn[user.upn.lower()] = user
        self.users_by_oid[user.object_id.lower()] = user

    def find_user(self, *, upn: str | None = None, object_id: str | None = None) -> User | None:
        if upn:
            return self.users_by_upn.get(upn.lower())
        if object_id:
            return self.users_by_oid.get(object_id.lower())
        return None


@dataclass
class Directory:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    # Facts for the ready file (first tenant/blueprint/agent/users of the seed).
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    def tenant(self, tenant: str) -> Tenant | None:
        return self.tenants.get(tenant.lower())

    def managed_identities(self) -> list[ManagedIdentity]:
        return [mi for t in self.tenants.values() for mi in t.managed_identities]


def certificate_entry(cert: x509.Certificate) -> dict[str, rsa.RSAPublicKey]:
    """Both thumbprint forms of a certificate, mapped to its public key."""
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SeedError("only RSA certificates are supported")
    sha1, sha256 = thumbprints(cert)
    return {sha1: key, sha256: key}


def demo_directory(*, blueprint_certificate: x509.Certificate | None = None) -> Directory:
    """The built-in directory of ``--demo`` (fixed GUIDs, known secret)."""
    certs = certificate_entry(blueprint_certificate) if blueprint_certificate else {}
    tenant = Tenant(DEMO_TENANT_ID)
    feds = (
        FederatedCredential(WORKLOAD_ISSUER_PATH, DEMO_WORKLOAD_SUBJECT),
        # The demo managed identity, trusted as Entra's docs configure it.
        FederatedCredential(tenant_issuer_path(DEMO_TENANT_ID), DEMO_MI_OBJECT_ID),
    )
    tenant.blueprints[DEMO_BLUEPRINT_APP_ID] = Blueprint(
        DEMO_BLUEPRINT_APP_ID,
        secrets=(DEMO_BLUEPRINT_SECRET,),
        certificates=certs,
        federated_credentials=feds,
        display_name="Demo agent blueprint",
        roles=DEMO_BLUEPRINT_ROLES,
    )
    tenant.managed_identities.append(
        ManagedIdentity(DEMO_MI_CLIENT_ID, DEMO_MI_OBJECT_ID, DEMO_MI_RESOURCE_ID, DEMO_TENANT_ID)
    )
    tenant.agents[DEMO_AGENT_APP_ID] = AgentIdentity(
        DEMO_AGENT_APP_ID,
        DEMO_BLUEPRINT_APP_ID,
        roles=("User.Read.All",),
        display_name="Demo agent identity",
    )
    tenant.add_user(
        User(
            DEMO_AGENT_USER_UPN,
            DEMO_AGENT_USER_OID,
            "Demo agent user",
            agent_identity_app_id=DEMO_AGENT_APP_ID,
        )
    )
    tenant.add_user(User(DEMO_USER_UPN, DEMO_USER_OID, "Alice"))
    summary = {
        "tenant_id": DEMO_TENANT_ID,
        "blueprint_app_id": DEMO_BLUEPRINT_APP_ID,
        "blueprint_secret": DEMO_BLUEPRINT_SECRET,
        "agent_identity_app_id": DEMO_AGENT_APP_ID,
        "agent_user_upn": DEMO_AGENT_USER_UPN,
        "agent_user_object_id": DEMO_AGENT_USER_OID,
        "user_upn": DEMO_USER_UPN,
        "user_object_id": DEMO_USER_OID,
        "workload_subject": DEMO_WORKLOAD_SUBJECT,
        "managed_identity_client_id": DEMO_MI_CLIENT_ID,
        "managed_identity_object_id": DEMO_MI_OBJECT_ID,
    }
    return Directory({DEMO_TENANT_ID: tenant}, summary)


def tenant_issuer_path(tenant_id: str) -> str:
    """The tenant's issuer relative to the authority host (managed identity tokens)."""
    return f"/{tenant_id}/v2.0"
