"""A TOML seed file -> Directory (``--seed``); every error a SeedError naming the entry.

The format::

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
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .directory import (
    TOKEN_EXCHANGE_AUDIENCE,
    AgentIdentity,
    Blueprint,
    Directory,
    FederatedCredential,
    ManagedIdentity,
    SeedError,
    Tenant,
    User,
    certificate_entry,
)


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
