"""``agent`` and ``agent-user``: provisioning through the daemon's ``/v1/agents`` and
``/v1/agent-users`` (the daemon holds the blueprint's credential and MSAL; this
module is stdlib only). Input the daemon would refuse anyway is refused here
first with exit code 2, so a typo never reaches Microsoft Graph."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from . import daemon_api
from .cliargs import Parsed
from .failures import EXIT_OK, UsageError

#: Microsoft Graph's longest displayName (tied to the daemon's by a test).
MAX_DISPLAY_NAME = 256
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UPN = re.compile(r"^[^@\s/\\'\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")

_ONLY: dict[tuple[str, str], tuple[str, ...]] = {
    ("agent", "create"): ("name", "sponsor", "save_profile"),
    ("agent", "list"): (),
    ("agent", "delete"): ("agent_identity_app_id", "delete_profile"),
    ("agent-user", "create"): ("upn", "display_name", "save_profile"),
    ("agent-user", "delete"): ("upn",),
}
_ACTION_FLAGS = (
    "name",
    "sponsor",
    "save_profile",
    "agent_identity_app_id",
    "delete_profile",
    "upn",
    "display_name",
)


def _check_flags(parsed: Parsed, command: str, action: str) -> str:
    for dest in _ACTION_FLAGS:
        given = parsed.opts.get(dest)
        if given not in (None, False, []) and dest not in _ONLY[(command, action)]:
            flag = "--" + dest.replace("_", "-")
            raise UsageError(f"{command} {action}: {flag} does not apply", command)
    profile = parsed.opts.get("profile")
    if not profile:
        raise UsageError(f"{command} {action}: --profile P is required", command)
    return str(profile)


def _need(parsed: Parsed, dest: str, command: str, action: str) -> str:
    value = parsed.opts.get(dest)
    if value is None or not str(value).strip():
        flag = "--" + dest.replace("_", "-")
        raise UsageError(f"{command} {action}: {flag} is required", command)
    return str(value).strip()


def _upn(value: str, command: str) -> str:
    if not _UPN.match(value):
        raise UsageError(
            f"{command}: --upn must look like alias@domain (got {value[:80]!r})", command
        )
    return value


def _delete(target: str, timeout: float | None) -> Any:
    """DELETE ``target``: the response (2xx), or the mapped error of the daemon's answer."""
    return daemon_api.call_checked("DELETE", target, timeout=timeout)


def _print(out: Any, data: Any, as_json: bool, text: str) -> None:
    out.write((json.dumps(data, indent=2, sort_keys=True) if as_json else text) + "\n")
    out.flush()


def run_agent(parsed: Parsed, stdout: Any, timeout: float | None) -> int:
    action = str(parsed.positionals[0])
    profile = _check_flags(parsed, "agent", action)
    as_json = bool(parsed.opts.get("json"))
    if action == "create":
        name = _need(parsed, "name", "agent", action)
        if len(name) > MAX_DISPLAY_NAME:
            raise UsageError(
                f"agent create: --name is {len(name)} characters; Microsoft Graph takes at "
                f"most {MAX_DISPLAY_NAME}",
                "agent",
            )
        given = parsed.opts.get("sponsor")
        sponsors = [str(s).strip() for s in given] if isinstance(given, list) else []
        if not sponsors:
            raise UsageError("agent create: give at least one --sponsor ID_OR_UPN", "agent")
        for sponsor in sponsors:
            if not (_GUID.match(sponsor) or _UPN.match(sponsor)):
                raise UsageError(
                    f"agent create: --sponsor {sponsor[:80]!r} is neither a GUID nor a UPN",
                    "agent",
                )
        payload: dict[str, Any] = {"profile": profile, "display_name": name, "sponsors": sponsors}
        if parsed.opts.get("save_profile"):
            payload["save_profile"] = str(parsed.opts["save_profile"])
        body = daemon_api.call_ok("POST", "/v1/agents", payload, timeout=timeout)
        text = (
            f"{body.get('app_id')}  object id {body.get('object_id')}  {body.get('display_name')}"
        )
        if body.get("saved_profile"):
            text += f"\nsaved profile {body['saved_profile']}"
        _print(stdout, body, as_json, text)
        return EXIT_OK
    if action == "list":
        target = "/v1/agents?" + urlencode({"profile": profile})
        body = daemon_api.call_ok("GET", target, timeout=timeout)
        agents = body.get("agents") if isinstance(body, dict) else []
        lines = [
            f"{a.get('app_id')}  {a.get('display_name')}"
            for a in agents or []
            if isinstance(a, dict)
        ]
        _print(stdout, agents, as_json, "\n".join(lines) or "(no agent identities)")
        return EXIT_OK
    app_id = _need(parsed, "agent_identity_app_id", "agent", action)
    if not _GUID.match(app_id):
        raise UsageError(
            f"agent delete: --agent-identity-app-id must be a GUID (got {app_id[:80]!r})", "agent"
        )
    query = {"profile": profile}
    if parsed.opts.get("delete_profile"):
        query["delete_profile"] = "true"
    target = f"/v1/agents/{app_id.lower()}?" + urlencode(query)
    resp = _delete(target, timeout)
    removed: list[Any] = []
    if resp.status == 200:
        removed = list(resp.json().get("deleted_profiles") or [])
    text = f"deleted agent identity {app_id.lower()}"
    if removed:
        text += f"; removed profiles {', '.join(str(n) for n in removed)}"
    _print(stdout, {"deleted": app_id.lower(), "deleted_profiles": removed}, as_json, text)
    return EXIT_OK


def run_agent_user(parsed: Parsed, stdout: Any, timeout: float | None) -> int:
    action = str(parsed.positionals[0])
    profile = _check_flags(parsed, "agent-user", action)
    as_json = bool(parsed.opts.get("json"))
    upn = _upn(_need(parsed, "upn", "agent-user", action), "agent-user")
    if action == "create":
        payload: dict[str, Any] = {"profile": profile, "upn": upn}
        display = parsed.opts.get("display_name")
        if display:
            if len(str(display)) > MAX_DISPLAY_NAME:
                raise UsageError(
                    f"agent-user create: --display-name is longer than {MAX_DISPLAY_NAME}",
                    "agent-user",
                )
            payload["display_name"] = str(display)
        if parsed.opts.get("save_profile"):
            payload["save_profile"] = str(parsed.opts["save_profile"])
        body = daemon_api.call_ok("POST", "/v1/agent-users", payload, timeout=timeout)
        text = f"{body.get('upn')}  object id {body.get('object_id')}"
        if body.get("saved_profile"):
            text += f"\nsaved profile {body['saved_profile']}"
        _print(stdout, body, as_json, text)
        return EXIT_OK
    target = f"/v1/agent-users/{quote(upn, safe='@.')}?" + urlencode({"profile": profile})
    _delete(target, timeout)
    _print(stdout, {"deleted": upn}, as_json, f"deleted agent user {upn}")
    return EXIT_OK
