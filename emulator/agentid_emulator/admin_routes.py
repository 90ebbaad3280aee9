"""The loopback admin API (``/_emulator/...``), sans-IO: a request's method, path
and body in, a reply out.

The server checks that the peer is on loopback and reads the body first; the
token endpoint and discovery stay in server.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .device_codes import DEVICE_LOGIN_PATH
from .emulator_state import EmulatorState
from .errors import AadstsError
from .faults import REVOKE_FIELD, FaultSpecError, parse_fault, parse_revoke
from .user_tokens import user_not_found
from .workload import mint_workload_token


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] = field(repr=False)


def _invalid(description: str) -> Reply:
    return Reply(400, {"error": "invalid_request", "error_description": description})


def admin_reply(state: EmulatorState, command: str, path: str, raw: bytes) -> Reply | AadstsError:
    """The answer to one admin request; an AadstsError is rendered like the token
    endpoint's errors."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _invalid("body is not JSON")
    route = (command, path.rstrip("/"))
    if route == ("GET", "/_emulator/stats"):
        return Reply(200, state.stats.to_json())
    if route == ("GET", "/_emulator/faults"):
        return Reply(200, {"fault": state.faults.current()})
    if route == ("POST", "/_emulator/faults") and isinstance(body, dict) and (REVOKE_FIELD in body):
        return _revoke(state, body)
    if route == ("POST", "/_emulator/tokens/introspect"):
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            return _invalid("'token' is a required string")
        return Reply(200, state.service.introspect(token))
    if route == ("POST", "/_emulator/faults"):
        try:
            state.faults.set(parse_fault(body))
        except FaultSpecError as exc:
            return _invalid(str(exc))
        return Reply(200, {"fault": state.faults.current()})
    if route == ("DELETE", "/_emulator/faults"):
        state.faults.clear()
        return Reply(200, {"fault": None})
    if route == ("POST", "/_emulator/reset"):
        state.faults.clear()
        state.stats.reset()
        return Reply(200, {})
    if route == ("POST", "/_emulator/users/token"):
        return _user_token(state, body)
    if route == ("POST", "/_emulator/devicecode/approve"):
        return _approve_device_code(state, body)
    if route == ("GET", DEVICE_LOGIN_PATH):
        # The device flow's verification_uri: nobody types a code in here.
        return Reply(
            200,
            {
                "message": "The emulator has no sign-in page: approve a user code with "
                'POST /_emulator/devicecode/approve {"user_code": ..., "upn": ...}.'
            },
        )
    if route == ("POST", "/_emulator/federated/token"):
        token = mint_workload_token(
            state.service, subject=body.get("subject"), audience=body.get("audience")
        )
        return Reply(200, {"access_token": token})
    return Reply(404, {"error": "not_found", "error_description": f"no route for {path}"})


def _revoke(state: EmulatorState, body: dict[str, Any]) -> Reply:
    """The revoke fault: ``{"revoke_token": "<access or refresh token>"}``, alone."""
    try:
        token = parse_revoke(body)
        answer = state.service.revoke(token)
    except (FaultSpecError, ValueError) as exc:
        return _invalid(str(exc))
    return Reply(200, answer)


def _user_token(state: EmulatorState, body: Any) -> Reply | AadstsError:
    service = state.service
    if not isinstance(body, dict):
        body = {}
    upn, audience = body.get("upn"), body.get("audience")
    lifetime, scope = body.get("lifetime_s"), body.get("scope")
    if (
        not isinstance(upn, str)
        or not upn
        or (audience is not None and (not isinstance(audience, str) or not audience))
        or (scope is not None and (not isinstance(scope, str) or not scope.strip()))
        or (scope is not None and audience is not None)
        or (
            lifetime is not None
            and (isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1)
        )
    ):
        return _invalid(
            "'upn' is a required string; 'audience' "
            "(default: the blueprint) a string, or else 'scope' "
            "(delegated scopes, e.g. 'https://graph.microsoft.com/AgentIdentity.Create.All'); "
            "'lifetime_s' a positive integer"
        )
    tenant_id = body.get("tenant_id") or service.directory.summary["tenant_id"]
    try:
        token = service.interactive_user_token(
            str(tenant_id), upn, audience, lifetime_s=lifetime, scope=scope
        )
    except AadstsError as err:
        return err
    return Reply(
        200,
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime or service.token_lifetime_s,
        },
    )


def _approve_device_code(state: EmulatorState, body: Any) -> Reply | AadstsError:
    """``{"user_code", "upn"}``: the user signs in to a pending device code flow."""
    if not isinstance(body, dict):
        body = {}
    user_code, upn = body.get("user_code"), body.get("upn")
    if not isinstance(user_code, str) or not user_code or not isinstance(upn, str) or not upn:
        return _invalid("'user_code' and 'upn' are required strings")
    service = state.service
    service.replication.apply_due(service.directory)
    try:
        flow = service.device_codes.peek(user_code, now=time.time())
    except KeyError:
        return Reply(404, {"error": "not_found", "error_description": "no pending device code"})
    tenant = service.tenant(flow.tenant_id)
    user = tenant.find_user(upn=upn)
    if user is None:
        return user_not_found(tenant)
    if user.agent_identity_app_id is not None:
        # agent-users.md: agent users cannot sign in interactively.
        return _invalid("an agent user cannot sign in interactively (device code)")
    service.device_codes.approve(user_code, upn, now=time.time())
    return Reply(200, {"approved": True, "client_id": flow.client_id})
