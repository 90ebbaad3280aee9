"""Provisioning for the daemon API (``/v1/agents``, ``/v1/agent-users``).

Each operation takes the profile's blueprint (blueprint.py), gets the
blueprint's own Graph token through the idp engine, and makes its Graph calls
(graph.py) in a worker thread. A created agent is registered with the broker
as fresh, so its first token requests wait out directory replication; a
deleted one has its cached tokens dropped. ``save_profile`` writes a profile
for the new agent (profile_file.py) and reloads the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from ..broker.replication_wait import FreshAgents
from ..config.loader import Config
from ..core.errors import InvalidRequest
from ..core.logs import get_logger
from . import graph as G
from .blueprint import BlueprintTarget, blueprint_graph_token, blueprint_target

if TYPE_CHECKING:
    # Imported by whoever builds the engine: a daemon started for a waiting
    # client builds this service before it imports MSAL (process/engine_host.py).
    from ..idp.engine import Engine

log = get_logger("agentid_daemon.provision.service")
T = TypeVar("T")


class BrokerSide(Protocol):
    """What provisioning asks of the broker."""

    fresh_agents: FreshAgents

    def flush_agent(self, identity: tuple[str, str, str, str]) -> int: ...


def agent_json(entity: dict[str, Any]) -> dict[str, Any]:
    """The API's view of a Graph agentIdentity."""
    return {
        "app_id": entity.get("appId"),
        "object_id": entity.get("id"),
        "display_name": entity.get("displayName"),
    }


class Provisioner:
    """Agent identities and agent users of a profile's blueprint."""

    def __init__(self, engine: Callable[[], Engine], broker: BrokerSide) -> None:
        """``engine``: the daemon's engine, asked for when a call first needs it
        (an autostarted daemon's own engine is built after its first answer)."""
        self._engine = engine
        self._broker = broker
        self._save_lock = trio.Lock()

    # -- agent identities ----------------------------------------------------

    async def create_agent(
        self, config: Config, profile: object, display_name: object, sponsors: object
    ) -> dict[str, Any]:
        target = blueprint_target(config, profile)
        if not isinstance(sponsors, list) or not all(isinstance(s, str) for s in sponsors):
            raise InvalidRequest("sponsors must be a list of user object ids or UPNs")
        if not isinstance(display_name, str):
            raise InvalidRequest("display_name must be a string")
        request = G.create_agent_identity_request(
            target.blueprint.blueprint_app_id,
            display_name,
            tuple(sponsors),
            resource=target.graph_resource,
        )
        created = await self._graph(
            target, lambda c, t: c.call(request, t, what="create an agent identity")
        )
        if created is None or not G.is_guid(created.get("appId")):
            raise G.GraphRequestError("Microsoft Graph answered the creation with no appId")
        self._broker.fresh_agents.add(str(created["appId"]))
        log.info(
            "agent identity created",
            profile=target.profile,
            agent_identity_app_id=created["appId"],
            object_id=created.get("id"),
        )
        return agent_json(created)

    async def list_agents(self, config: Config, profile: object) -> list[dict[str, Any]]:
        target = blueprint_target(config, profile)
        request = G.list_agent_identities_request(target.blueprint.blueprint_app_id)
        found = await self._graph(
            target, lambda c, t: c.list_all(request, t, what="list the agent identities")
        )
        return [agent_json(a) for a in found]

    async def delete_agent(self, config: Config, profile: object, app_id: object) -> None:
        target = blueprint_target(config, profile)
        wanted = G.check_guid(app_id, "agent identity app id")
        entity = await self._find_agent(target, wanted)

        def delete(client: G.GraphClient, token: str) -> None:
            request = G.delete_service_principal_request(str(entity["id"]))
            client.call(request, token, what="delete the agent identity")

        await self._graph(target, delete)
        ref = target.blueprint
        dropped = self._broker.flush_agent(
            (ref.authority_host, ref.tenant_id, ref.blueprint_app_id, wanted)
        )
        log.info(
            "agent identity deleted",
            profile=target.profile,
            agent_identity_app_id=wanted,
            tokens_dropped=dropped,
        )

    async def _find_agent(self, target: BlueprintTarget, app_id: str) -> dict[str, Any]:
        request = G.list_agent_identities_request(target.blueprint.blueprint_app_id)
        found = await self._graph(
            target, lambda c, t: c.list_all(request, t, what="list the agent identities")
        )
        for entity in found:
            if str(entity.get("appId", "")).lower() == app_id:
                return entity
        raise G.GraphRequestError(
            f"blueprint {target.blueprint.blueprint_app_id} has no agent identity with app id "
            f"{app_id} (agentid-helper agent list --profile {target.profile} shows its agents)",
            graph_code="Request_ResourceNotFound",
            status=404,
        )

    # -- agent users --------------------------------------------------------

    async def create_agent_user(
        self, config: Config, profile: object, upn: object, display_name: object
    ) -> dict[str, Any]:
        target = blueprint_target(config, profile)
        agent_app_id = target.merged.get("agent_identity_app_id")
        if not agent_app_id:
            raise InvalidRequest(
                f"profile {profile} names no agent_identity_app_id: an agent user's parent "
                "is the profile's agent identity"
            )
        checked = G.check_upn(upn)
        name = display_name if isinstance(display_name, str) and display_name else None
        parent = await self._find_agent(target, str(agent_app_id).lower())
        request = G.create_agent_user_request(str(parent["id"]), checked, name)
        created = await self._graph(
            target, lambda c, t: c.call(request, t, what="create the agent user")
        )
        if created is None:
            raise G.GraphRequestError("Microsoft Graph answered the creation with no user")
        self._broker.fresh_agents.add(checked, str(created.get("id") or ""))
        return {
            "object_id": created.get("id"),
            "upn": created.get("userPrincipalName", checked),
            "display_name": created.get("displayName"),
            "agent_identity_app_id": str(agent_app_id).lower(),
        }

    async def delete_agent_user(self, config: Config, profile: object, upn: object) -> None:
        target = blueprint_target(config, profile)
        request = G.delete_user_request(G.check_upn(upn))
        await self._graph(target, lambda c, t: c.call(request, t, what="delete the agent user"))

    # -- profiles ---------------------------------------------------------------
    # profile_file (and tomlkit, its parser) is imported on first use: a daemon
    # builds this service at start, and nothing of it is needed before the first answer.

    async def save_profile(
        self, config_path: str | None, source: str, name: object, overrides: dict[str, str]
    ) -> str:
        from .profile_file import save_profile

        async with self._save_lock:
            return await trio.to_thread.run_sync(save_profile, config_path, source, name, overrides)

    async def delete_profiles_of(self, config_path: str | None, agent_app_id: str) -> list[str]:
        from .profile_file import delete_profiles_of

        async with self._save_lock:
            return await trio.to_thread.run_sync(delete_profiles_of, config_path, agent_app_id)

    # -- plumbing -----------------------------------------------------------------

    async def _graph(self, target: BlueprintTarget, call: Callable[[G.GraphClient, str], T]) -> T:
        """``call(client, token)`` in a worker thread, with the blueprint's Graph token."""

        def run() -> T:
            engine = self._engine()
            token = blueprint_graph_token(engine, target)
            session = engine.provider_session(target.blueprint.ca_bundle)
            return call(G.GraphClient(session, target.graph_endpoint), token)

        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
