"""``/v1/agents`` and ``/v1/agent-users``: provisioning through the daemon (docs/api.md).

- ``POST /v1/agents`` ``{"profile", "display_name", "sponsors"[, "save_profile"]}``
  → 201 ``{"app_id", "object_id", "display_name"[, "saved_profile"]}``
- ``GET /v1/agents?profile=P`` → 200 ``{"agents": [{"app_id", "object_id", "display_name"}]}``
- ``DELETE /v1/agents/{app_id}?profile=P[&delete_profile=true]`` → 204 (200
  ``{"deleted_profiles": [...]}`` with ``delete_profile``); the agent's cached
  tokens are dropped.
- ``POST /v1/agent-users`` ``{"profile", "upn"[, "display_name", "save_profile"]}``
  → 201 ``{"object_id", "upn", "display_name", "agent_identity_app_id"[, "saved_profile"]}``
- ``DELETE /v1/agent-users/{upn}?profile=P`` → 204

The work is :class:`provision.service.Provisioner`'s; this module checks the
request's shape and writes profiles through it (then reloads the config).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from ..config.loader import Config
from ..config.watch import ReloadOutcome
from ..core.errors import AgentIdError, ConfigurationError, InvalidRequest
from ..server.protocol import Response
from .bodies import json_type, parse_json_object

AGENTS = "/v1/agents"
AGENT_USERS = "/v1/agent-users"


def check_new_name(name: object, existing: Iterable[str]) -> str:
    """:func:`..provision.profile_file.check_new_name`, imported on first use: that
    module brings tomlkit, which nothing needs before the daemon's first answer."""
    from ..provision.profile_file import check_new_name as check

    return check(name, existing)


class ProvisionerLike(Protocol):
    """What the routes ask of :class:`provision.service.Provisioner`."""

    async def create_agent(
        self, config: Config, profile: object, display_name: object, sponsors: object
    ) -> dict[str, Any]: ...
    async def list_agents(self, config: Config, profile: object) -> list[dict[str, Any]]: ...
    async def delete_agent(self, config: Config, profile: object, app_id: object) -> None: ...
    async def create_agent_user(
        self, config: Config, profile: object, upn: object, display_name: object
    ) -> dict[str, Any]: ...
    async def delete_agent_user(self, config: Config, profile: object, upn: object) -> None: ...
    async def save_profile(
        self, config_path: str | None, source: str, name: object, overrides: dict[str, str]
    ) -> str: ...
    async def delete_profiles_of(self, config_path: str | None, agent_app_id: str) -> list[str]: ...


class Reloader(Protocol):
    async def reload(self, *, trigger: str = ...) -> ReloadOutcome: ...


def is_provisioning_path(path: str) -> bool:
    return path in (AGENTS, AGENT_USERS) or path.startswith((AGENTS + "/", AGENT_USERS + "/"))


def _query(target: str) -> dict[str, str]:
    raw = target.partition("?")[2]
    try:
        parsed = parse_qs(raw, keep_blank_values=True, max_num_fields=10)
    except ValueError:
        raise InvalidRequest("too many query parameters") from None
    out: dict[str, str] = {}
    for key, values in parsed.items():
        if key not in ("profile", "delete_profile"):
            raise InvalidRequest(f"unknown query parameter {key[:40]!r}")
        out[key] = values[-1]
    return out


def _fields(obj: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(f"unknown field {key[:40]!r} (allowed: {', '.join(allowed)})")
    for key in ("profile", "display_name", "save_profile", "upn"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"field {key!r} must be a string, not {json_type(value)}")
    if not obj.get("profile"):
        raise InvalidRequest("field 'profile' is required: the profile whose blueprint provisions")
    return obj


class AgentRoutes:
    """Dispatches the provisioning paths (methods per path as in the docstring)."""

    def __init__(
        self,
        provisioner: ProvisionerLike,
        config: Config | None,
        config_path: str | None,
        reloader: Reloader | None,
    ) -> None:
        self._p = provisioner
        self._config_path = config_path
        self._reloader = reloader
        if config is None:
            raise ConfigurationError("the daemon has no usable configuration")
        self._config = config

    async def handle(
        self, method: str, path: str, target: str, body: bytes, ctx: dict[str, Any]
    ) -> Response:
        query = _query(target)
        if path == AGENTS:
            if method == "POST":
                return await self._create_agent(body, ctx)
            if method == "GET":
                return await self._list_agents(query, ctx)
            return _not_allowed(method, path, "GET, POST")
        if path == AGENT_USERS:
            if method == "POST":
                return await self._create_agent_user(body, ctx)
            return _not_allowed(method, path, "POST")
        key = unquote(path.rpartition("/")[2])
        if path.count("/") != 3 or not key:
            return Response.error(404, "not_found", f"no such endpoint: {path[:200]}")
        if method != "DELETE":
            return _not_allowed(method, path, "DELETE")
        profile = query.get("profile")
        if not profile:
            raise InvalidRequest("query parameter 'profile' is required")
        ctx.update(profile=profile)
        if path.startswith(AGENTS + "/"):
            await self._p.delete_agent(self._config, profile, key)
            ctx.update(agent_identity_app_id=key.lower())
            if query.get("delete_profile", "").lower() in ("1", "true", "yes"):
                removed = await self._p.delete_profiles_of(self._config_path, key.lower())
                if removed:
                    await self._reload("agent delete --delete-profile")
                return Response.json(200, {"deleted_profiles": removed})
            return Response.empty(204)
        await self._p.delete_agent_user(self._config, profile, key)
        return Response.empty(204)

    async def _create_agent(self, body: bytes, ctx: dict[str, Any]) -> Response:
        obj = _fields(
            parse_json_object(body, allow_empty=False),
            ("profile", "display_name", "sponsors", "save_profile"),
        )
        profile = obj["profile"]
        ctx.update(profile=profile)
        if "display_name" not in obj:
            raise InvalidRequest("field 'display_name' is required")
        if obj.get("save_profile"):
            check_new_name(obj["save_profile"], self._config.profiles)
        created = await self._p.create_agent(
            self._config, profile, obj["display_name"], obj.get("sponsors", [])
        )
        ctx.update(agent_identity_app_id=created["app_id"])
        if obj.get("save_profile"):
            created["saved_profile"] = await self._save(
                profile,
                obj["save_profile"],
                {"agent_identity_app_id": str(created["app_id"]), "mode": "AutonomousApp"},
            )
        return Response.json(201, created)

    async def _list_agents(self, query: dict[str, str], ctx: dict[str, Any]) -> Response:
        profile = query.get("profile")
        if not profile:
            raise InvalidRequest("query parameter 'profile' is required")
        ctx.update(profile=profile)
        agents = await self._p.list_agents(self._config, profile)
        return Response.json(200, {"agents": agents})

    async def _create_agent_user(self, body: bytes, ctx: dict[str, Any]) -> Response:
        obj = _fields(
            parse_json_object(body, allow_empty=False),
            ("profile", "upn", "display_name", "save_profile"),
        )
        profile = obj["profile"]
        ctx.update(profile=profile)
        if obj.get("save_profile"):
            check_new_name(obj["save_profile"], self._config.profiles)
        created = await self._p.create_agent_user(
            self._config, profile, obj.get("upn"), obj.get("display_name")
        )
        if obj.get("save_profile"):
            created["saved_profile"] = await self._save(
                profile,
                obj["save_profile"],
                {
                    "agent_identity_app_id": str(created["agent_identity_app_id"]),
                    "mode": "AutonomousUser",
                    "user_upn": str(created["upn"]),
                },
            )
        return Response.json(201, created)

    async def _save(self, source: str, name: str, overrides: dict[str, str]) -> str:
        try:
            saved = await self._p.save_profile(self._config_path, source, name, overrides)
        except AgentIdError as exc:
            # Created but not saved: say what exists, so nothing is left unnoticed.
            upn = overrides.get("user_upn")
            what = (
                f"agent user {upn}"
                if upn
                else (f"agent identity {overrides['agent_identity_app_id']}")
            )
            exc.description = (
                f"{exc.description} (the {what} was created: add its profile by hand or delete it)"
            )
            raise
        await self._reload("save_profile")
        return saved

    async def _reload(self, trigger: str) -> None:
        if self._reloader is not None:
            await self._reloader.reload(trigger=trigger)


def _not_allowed(method: str, path: str, allow: str) -> Response:
    return Response.error(
        405,
        "method_not_allowed",
        f"{method} is not allowed on {path[:200]} (allowed: {allow})",
        headers=[("allow", allow)],
    )
