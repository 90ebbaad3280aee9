"""A profile's blueprint as Graph sees it, and the blueprint's own Graph token.

An agent platform provisions agent identities with the blueprint's credential:
client credentials for ``https://graph.microsoft.com/.default`` give a token
with ``AgentIdentity.CreateAsManager`` (granted to every blueprint principal),
enough to create and delete agent identities of that blueprint
(MicrosoftDocs/entra-docs docs/agent-id/identity-platform/
create-delete-agent-identities.md). The profile need not name an agent
identity: only tenant, blueprint, authority and credential are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentid_client.redact import quoted

from ..config.loader import Config
from ..config.values import did_you_mean
from ..core.errors import InvalidRequest, UnknownProfile
from ..core.models import DEFAULT_AUTHORITY_HOST, AgentRef, CredentialSpec
from .graph import graph_resource, graph_scope

if TYPE_CHECKING:
    from ..idp.engine import Engine  # MSAL: imported by whoever builds the engine


@dataclass(frozen=True)
class BlueprintTarget:
    """What provisioning through one profile needs."""

    profile: str
    blueprint: AgentRef  # agent_identity_app_id = the blueprint's app id (unused)
    graph_endpoint: str  # e.g. https://graph.microsoft.com (no version)
    graph_resource: str  # the token audience, e.g. https://graph.microsoft.com
    merged: dict[str, Any]  # the profile over [defaults], for --save-profile

    @property
    def scope(self) -> str:
        return graph_scope(self.blueprint.authority_host)


def blueprint_target(config: Config, profile: object) -> BlueprintTarget:
    """The blueprint of ``profile`` (its tenant, app id, credential, Graph endpoint)."""
    if not isinstance(profile, str) or not profile:
        raise InvalidRequest("profile is required: the profile whose blueprint provisions")
    if profile not in config.profiles:
        known = ", ".join(config.profile_names()) or "none configured"
        raise UnknownProfile(
            f"unknown profile {quoted(profile)}{did_you_mean(profile, config.profile_names())}; "
            f"known profiles: {known}"
        )
    merged = config.layered(config.profiles[profile])
    missing = [k for k in ("tenant_id", "blueprint_app_id") if k not in merged]
    if missing:
        raise InvalidRequest(
            f"profile {quoted(profile)} has no {' or '.join(missing)}: provisioning needs "
            "the blueprint's tenant and app id"
        )
    spec: CredentialSpec = merged.get("blueprint_credential") or CredentialSpec("keyring", "")
    if spec.kind == "keyring":
        spec = CredentialSpec("keyring", merged["blueprint_app_id"])
    authority = merged.get("authority_host", DEFAULT_AUTHORITY_HOST)
    ref = AgentRef(
        authority_host=authority,
        tenant_id=merged["tenant_id"],
        blueprint_app_id=merged["blueprint_app_id"],
        agent_identity_app_id=merged["blueprint_app_id"],
        credential=spec,
        ca_bundle=merged.get("ca_bundle"),
    )
    resource = graph_resource(authority)
    return BlueprintTarget(
        profile=profile,
        blueprint=ref,
        graph_endpoint=merged.get("graph_endpoint") or resource,
        graph_resource=resource,
        merged=merged,
    )


def blueprint_graph_token(engine: Engine, target: BlueprintTarget) -> str:
    """The blueprint's app-only Graph token (sync: a worker thread). Not cached:
    provisioning is rare, and a fresh token carries freshly granted roles."""
    assertion = None
    if target.blueprint.credential.kind == "managed_identity":
        assertion = engine.acquire_managed_identity(target.blueprint.credential).access_token
    token = engine.acquire_blueprint_token(target.blueprint, (target.scope,), assertion=assertion)
    return token.access_token
