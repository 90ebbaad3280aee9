"""The emulated directory: tenants, agent identity blueprints (with their
credentials), agent identities, agent users and human users.

Loaded from the built-in demo (fixed GUIDs, a known secret) or a TOML seed::

    [[tenants]]
    id = "11111111-1111-1111-1111-111111111111"

    [[tenants.blueprints]]
    app_id = "..."
    secrets = ["..."]                          # client secrets
    roles = ["AgentIdentity.CreateAsManager"]  # app roles of its own (Graph) token
    certificates = ["/path/bp-cert.pem"]       # public certificates (PEM)
    [[tenants.blueprints.federated_credentials]]
    issuer = "https://issuer.example"
    subject = "system:serviceaccount:ns:name"
    audience = "api://AzureADTokenExchange"    # default
    public_key_file = "/path/issuer-public.pem"  # verifies the assertion signature
    # A managed identity as credential: issuer = this tenant's issuer (a path is
    # relative to the emulator's authority host), subject = its object id.
    [[tenants.blueprints.federated_credentials]]
    issuer = "/11111111-1111-1111-1111-111111111111/v2.0"
    subject = "<managed identity object id>"

    [[tenants.agent_identities]]
    app_id = "..."
    blueprint_app_id = "..."
    roles = ["User.Read.All"]                  # app roles granted (AutonomousApp tokens)

    [[tenants.agent_users]]
    upn = "agent-user@contoso.example"
    object_id = "..."
    agent_identity_app_id = "..."

    [[tenants.users]]
    upn = "alice@contoso.example"
    object_id = "..."

    [[tenants.managed_identities]]             # user-assigned, served by --imds-port
    client_id = "..."
    object_id = "..."
    resource_id = "/subscriptions/.../userAssignedIdentities/name"   # optional

Relative file paths are resolved against the seed file's folder.
"""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
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


def _guid(value: Any, where: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise SeedError(f"{where}: {value!r} is not a GUID") from None


def _str(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise SeedError(f"{where}: '{key}' must be a non-empty string")
    return value


def _path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _load_certificate(path: Path, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SeedError(f"{where}: cannot read certificate {path}: {exc}") from None


def _load_public_key(path: Path, where: str) -> rsa.RSAPublicKey:
    key: object
    try:
        data = path.read_bytes()
        key = (
            x509.load_pem_x509_certificate(data).public_key()
            if b"CERTIFICATE" in data
            else serialization.load_pem_public_key(data)
        )
    except (OSError, ValueError) as exc:
        raise SeedError(f"{where}: cannot read public key {path}: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SeedError(f"{where}: only RSA keys are supported")
    return key


def _blueprint(entry: dict[str, Any], base: Path, where: str) -> Blueprint:
    app_id = _guid(entry.get("app_id"), where)
    secrets = entry.get("secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(s, str) and s for s in secrets):
        raise SeedError(f"{where}: 'secrets' must be a list of non-empty strings")
    certs: dict[str, rsa.RSAPublicKey] = {}
    for path in entry.get("certificates", []):
        certs.update(certificate_entry(_load_certificate(_path(base, path), where)))
    feds = []
    for i, fed in enumerate(entry.get("federated_credentials", [])):
        fwhere = f"{where}.federated_credentials[{i}]"
        key_file = fed.get("public_key_file")
        feds.append(
            FederatedCredential(
                _str(fed, "issuer", fwhere),
                _str(fed, "subject", fwhere),
                fed.get("audience", TOKEN_EXCHANGE_AUDIENCE),
                _load_public_key(_path(base, key_file), fwhere) if key_file else None,
            )
        )
    return Blueprint(
        app_id,
        tuple(secrets),
        certs,
        tuple(feds),
        entry.get("display_name", ""),
        _strings(entry, "roles", where),
    )


def _strings(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SeedError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def _managed_identity(entry: dict[str, Any], tenant_id: str, where: str) -> ManagedIdentity:
    resource_id = entry.get("resource_id", "")
    if not isinstance(resource_id, str):
        raise SeedError(f"{where}: 'resource_id' must be a string")
    return ManagedIdentity(
        _guid(entry.get("client_id"), where),
        _guid(entry.get("object_id"), where),
        resource_id,
        tenant_id,
    )


def load_seed(path: Path) -> Directory:
    """Parse a TOML seed file into a Directory (raises SeedError with a clear message)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SeedError(f"cannot read seed {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SeedError(f"{path}: invalid TOML: {exc}") from None
    base = path.resolve().parent
    directory = Directory()
    tenants = data.get("tenants")
    if not isinstance(tenants, list) or not tenants:
        raise SeedError(f"{path}: at least one [[tenants]] entry is required")
    for t_index, t_entry in enumerate(tenants):
        where = f"tenants[{t_index}]"
        tenant = Tenant(_guid(t_entry.get("id"), where))
        for i, entry in enumerate(t_entry.get("blueprints", [])):
            bp = _blueprint(entry, base, f"{where}.blueprints[{i}]")
            tenant.blueprints[bp.app_id] = bp
        for i, entry in enumerate(t_entry.get("agent_identities", [])):
            awhere = f"{where}.agent_identities[{i}]"
            agent = AgentIdentity(
                _guid(entry.get("app_id"), awhere),
                _guid(entry.get("blueprint_app_id"), awhere),
                tuple(entry.get("roles", [])),
                entry.get("display_name", ""),
            )
            if agent.blueprint_app_id not in tenant.blueprints:
                raise SeedError(f"{awhere}: blueprint {agent.blueprint_app_id} is not declared")
            tenant.agents[agent.app_id] = agent
        for i, entry in enumerate(t_entry.get("agent_users", [])):
            uwhere = f"{where}.agent_users[{i}]"
            owner = _guid(entry.get("agent_identity_app_id"), uwhere)
            if owner not in tenant.agents:
                raise SeedError(f"{uwhere}: agent identity {owner} is not declared")
            tenant.add_user(
                User(
                    _str(entry, "upn", uwhere),
                    _guid(entry.get("object_id"), uwhere),
                    entry.get("display_name", ""),
                    agent_identity_app_id=owner,
                )
            )
        for i, entry in enumerate(t_entry.get("users", [])):
            uwhere = f"{where}.users[{i}]"
            tenant.add_user(
                User(
                    _str(entry, "upn", uwhere),
                    _guid(entry.get("object_id"), uwhere),
                    entry.get("display_name", ""),
                )
            )
        for i, entry in enumerate(t_entry.get("managed_identities", [])):
            tenant.managed_identities.append(
                _managed_identity(entry, tenant.tenant_id, f"{where}.managed_identities[{i}]")
            )
        directory.tenants[tenant.tenant_id] = tenant
    directory.summary = _summary(directory)
    return directory


def _summary(directory: Directory) -> dict[str, Any]:
    tenant = next(iter(directory.tenants.values()))
    summary: dict[str, Any] = {"tenant_id": tenant.tenant_id}
    bp = next(iter(tenant.blueprints.values()), None)
    if bp:
        summary["blueprint_app_id"] = bp.app_id
        summary["blueprint_secret"] = bp.secrets[0] if bp.secrets else None
    agent = next(iter(tenant.agents.values()), None)
    if agent:
        summary["agent_identity_app_id"] = agent.app_id
    users = list(tenant.users_by_oid.values())
    agent_user = next((u for u in users if u.agent_identity_app_id), None)
    human = next((u for u in users if not u.agent_identity_app_id), None)
    if agent_user:
        summary["agent_user_upn"] = agent_user.upn
        summary["agent_user_object_id"] = agent_user.object_id
    if human:
        summary["user_upn"] = human.upn
        summary["user_object_id"] = human.object_id
    mi = next(iter(directory.managed_identities()), None)
    if mi:
        summary["managed_identity_client_id"] = mi.client_id
        summary["managed_identity_object_id"] = mi.object_id
    return summary
