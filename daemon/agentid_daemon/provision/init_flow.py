"""``init``'s steps, in order, each one said as it is done; and what a failure leaves.

With the administrator's delegated Graph token (admin_signin.py):

1. the blueprint, ``POST /beta/applications`` (``@odata.type``
   ``Microsoft.Graph.AgentIdentityBlueprint``), sponsored and owned by the
   sponsors (default: the administrator): create-blueprint.md;
2. its blueprint principal, ``POST /beta/serviceprincipals/
   graph.agentIdentityBlueprintPrincipal``: create-blueprint.md;
3. its credential (init_credentials.py);
4. the agent identity, ``POST /beta/serviceprincipals/Microsoft.Graph.AgentIdentity``:
   create-delete-agent-identities.md (an administrator's
   ``AgentIdentity.Create.All`` creates it, as the blueprint's own token could);
5. optionally its agent user, ``POST /beta/users`` (``microsoft.graph.agentUser``):
   agent-users.md;
6. the profiles, into config.toml (profile_file.py: comments kept, never overwritten);
7. a first token for the new agent (:func:`wait_for_first_token`): the proof, and
   the wait for Entra to replicate what was just created.

Every object made is recorded as :class:`Made` with how to remove it; when a
step fails (or the user presses Ctrl-C), :class:`InitIncomplete` carries the
error and that list, so the partial state is printed, never left unsaid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..broker.replication_wait import NOT_REPLICATED_CODES, next_pause, ran_out_waiting
from ..config import fields as F
from ..config.loader import load_config
from ..core.errors import AgentIdError, ConfigurationError, IdentityProviderError
from ..core.models import DEFAULT_AUTHORITY_HOST, AcquiredToken, TokenRequest
from ..idp.engine import Engine
from . import graph as G
from .admin_signin import AdminToken
from .init_answers import InitAnswers
from .init_credentials import CredentialPlan
from .profile_file import add_profiles

#: Besides "not found" (replication_wait.py), a brand-new credential is refused
#: until it replicates: AADSTS7000215 (invalid client secret), AADSTS700027
#: (a certificate not registered) and AADSTS70021 (no matching federated
#: identity credential).
NEW_CREDENTIAL_CODES = frozenset({7000215, 700027, 70021})
#: How long ``init`` waits for Entra to replicate the new objects at most.
FIRST_TOKEN_WAIT_S = 120.0


@dataclass(frozen=True)
class Made:
    """One thing ``init`` created, and the command line that removes it."""

    what: str
    detail: str
    remove: str | None  # None: it goes with another (a blueprint principal)


@dataclass(frozen=True)
class InitResult:
    profile: str
    user_profile: str | None
    config_path: str
    default_profile_set: bool
    blueprint_app_id: str
    agent_identity_app_id: str
    agent_user_upn: str | None
    credential: str
    made: tuple[Made, ...]


class InitIncomplete(Exception):
    """A step failed (``cause``: an AgentIdError or KeyboardInterrupt) after
    ``made`` was created."""

    def __init__(self, cause: BaseException, made: tuple[Made, ...]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.made = made


@dataclass
class _Record:
    graph: str  # Graph's base URL, for the removal lines
    made: list[Made] = field(default_factory=list)

    def delete_line(self, path: str) -> str:
        return f"az rest --method DELETE --url {self.graph}/{G.API_VERSION}{path}"


def tenant_of(answers: InitAnswers, admin: AdminToken) -> str:
    """The profile's tenant: the signed-in tenant's GUID, which must be the one asked for."""
    signed_in = (admin.tenant_id or "").lower()
    if G.is_guid(answers.tenant) and signed_in and signed_in != answers.tenant:
        raise G.GraphRequestError(
            f"the administrator's Graph token is for tenant {signed_in}, not "
            f"{answers.tenant}: sign in to (or get the token of) the tenant asked for",
            status=400,
        )
    return signed_in if G.is_guid(signed_in) else answers.tenant


def create_everything(
    answers: InitAnswers,
    admin: AdminToken,
    client: G.GraphClient,
    plan: CredentialPlan,
    say: Callable[[str], None],
) -> InitResult:
    """Steps 1-6 (the module docstring); :class:`InitIncomplete` on any failure."""
    record = _Record(client.endpoint)
    token = admin.access_token
    resource = G.graph_resource(answers.authority_host)
    try:
        tenant = tenant_of(answers, admin)
        sponsors = answers.sponsors or ((admin.object_id,) if admin.object_id else ())
        owners = (admin.object_id,) if admin.object_id else ()
        request = G.create_blueprint_request(
            answers.blueprint_name, sponsors, owners, resource=resource
        )
        blueprint = _created(client.call(request, token, what="create the blueprint"), "blueprint")
        app_id, object_id = str(blueprint["appId"]).lower(), str(blueprint["id"])
        record.made.append(
            Made(
                "blueprint",
                f"{answers.blueprint_name!r}, app id {app_id}, object id {object_id}",
                record.delete_line(f"/applications/{object_id}"),
            )
        )
        say(f"created the blueprint {answers.blueprint_name!r} (app id {app_id})")
        request = G.create_blueprint_principal_request(app_id)
        principal = _created(
            client.call(request, token, what="create the blueprint principal"), "principal"
        )
        record.made.append(
            Made("blueprint principal", f"object id {principal['id']}", None)  # goes with it
        )
        say("created its blueprint principal")
        credential = plan.register(client, token, blueprint, tenant)
        record.made.append(_credential_made(plan, credential, app_id))
        say(f"added its credential: {credential}")
        request = G.create_agent_identity_request(
            app_id, answers.agent_name, sponsors, resource=resource
        )
        agent = _created(client.call(request, token, what="create the agent identity"), "agent")
        agent_app_id, agent_id = str(agent["appId"]).lower(), str(agent["id"])
        record.made.append(
            Made(
                "agent identity",
                f"{answers.agent_name!r}, app id {agent_app_id}",
                record.delete_line(f"/serviceprincipals/{agent_id}"),
            )
        )
        say(f"created the agent identity {answers.agent_name!r} (app id {agent_app_id})")
        upn = answers.agent_user_upn
        if upn:
            request = G.create_agent_user_request(agent_id, upn)
            user = _created(client.call(request, token, what="create the agent user"), "user")
            record.made.append(
                Made(
                    "agent user",
                    f"{upn}, object id {user['id']}",
                    record.delete_line(f"/users/{user['id']}"),
                )
            )
            say(f"created the agent user {upn}")
        profiles = _profiles(answers, tenant, app_id, agent_app_id, plan)
        made_default = add_profiles(answers.config_path, profiles, answers.profile)
        record.made.append(
            Made(
                "profiles",
                f"{', '.join(profiles)} in {answers.config_path}",
                f"remove [profiles.{answers.profile}]"
                + (f" and [profiles.{answers.user_profile}]" if answers.user_profile else "")
                + f" from {answers.config_path}",
            )
        )
        say(
            f"wrote the profile{'s' if len(profiles) > 1 else ''} {', '.join(profiles)} "
            f"into {answers.config_path}"
            + (f" ({answers.profile} is the default profile)" if made_default else "")
        )
    except OSError as exc:  # the config file's write: said like the other refusals
        plan.discard()
        cause = ConfigurationError(f"cannot write {answers.config_path}: {exc.strerror}")
        raise InitIncomplete(cause, tuple(record.made)) from None
    except (AgentIdError, KeyboardInterrupt) as exc:
        plan.discard()
        raise InitIncomplete(exc, tuple(record.made)) from None
    return InitResult(
        profile=answers.profile,
        user_profile=answers.user_profile,
        config_path=str(answers.config_path),
        default_profile_set=made_default,
        blueprint_app_id=app_id,
        agent_identity_app_id=agent_app_id,
        agent_user_upn=upn,
        credential=credential,
        made=tuple(record.made),
    )


def _created(reply: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if reply is None or not G.is_guid(reply.get("id")):
        raise G.GraphRequestError(f"Microsoft Graph answered the {what}'s creation with no id")
    if what in ("blueprint", "agent") and not G.is_guid(reply.get("appId")):
        raise G.GraphRequestError(f"Microsoft Graph answered the {what}'s creation with no appId")
    return reply


def _credential_made(plan: CredentialPlan, credential: str, app_id: str) -> Made:
    kind = plan.answers.credential
    if kind == "keyring":
        remove = f"agentid-helper secret delete --blueprint-app-id {app_id}"
    elif plan.file is not None:
        remove = f"rm {plan.file}"
    else:
        remove = None  # a federated credential goes with the blueprint
    return Made("credential", credential, remove)


def _profiles(
    answers: InitAnswers, tenant: str, app_id: str, agent_app_id: str, plan: CredentialPlan
) -> dict[str, dict[str, Any]]:
    """The new profiles: every key they need written out, so that no ``[defaults]``
    of the file (another tenant, another mode) changes what they mean."""
    agent: dict[str, Any] = {
        "tenant_id": tenant,
        "blueprint_app_id": app_id,
        "agent_identity_app_id": agent_app_id,
        "mode": "AutonomousApp",
        "blueprint_credential": plan.profile_value(),
    }
    if answers.authority_host != DEFAULT_AUTHORITY_HOST:
        agent["authority_host"] = answers.authority_host
    if answers.ca_bundle:
        agent["ca_bundle"] = answers.ca_bundle
    if answers.graph_endpoint:
        agent["graph_endpoint"] = answers.graph_endpoint
    out = {answers.profile: agent}
    if answers.agent_user_upn and answers.user_profile:
        out[answers.user_profile] = {
            **agent,
            "mode": "AutonomousUser",
            "user_upn": F.upn(answers.agent_user_upn),
        }
    return out


def first_token_request(result: InitResult) -> TokenRequest:
    """The new profile resolved by the daemon's own config loader (what ``get`` will use)."""
    return load_config(result.config_path).resolve({"profile": result.profile})


def wait_for_first_token(
    engine: Engine,
    request: TokenRequest,
    say: Callable[[str], None],
    *,
    budget_s: float = FIRST_TOKEN_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> AcquiredToken:
    """T1, then the agent's token, retried while Entra answers as for objects it
    has not replicated yet (:data:`NOT_REPLICATED_CODES`, :data:`NEW_CREDENTIAL_CODES`),
    at most ``budget_s``; the last refusal otherwise, saying how long it waited."""
    agent = request.agent
    started = time.monotonic()
    pause: float | None = None
    said = False
    while True:
        try:
            assertion = None
            if agent.credential.kind == "managed_identity":
                assertion = engine.acquire_managed_identity(agent.credential).access_token
            t1 = engine.acquire_t1(agent, assertion=assertion)
            return engine.acquire_autonomous_app(agent, t1.access_token, request.scopes)
        except IdentityProviderError as exc:
            codes = set(exc.aadsts_codes)
            if not codes & (NOT_REPLICATED_CODES | NEW_CREDENTIAL_CODES):
                raise
            waited = time.monotonic() - started
            pause = next_pause(pause)
            if waited + pause > budget_s:
                raise ran_out_waiting(
                    exc,
                    f"waited {waited:.0f} s for Entra to replicate the new blueprint and agent",
                    "replication can take a few minutes: try `agentid-helper get --profile "
                    f"{request.profile}` again later",
                ) from None
            if not said:
                say(f"waiting for Entra to replicate the new objects (up to {budget_s:.0f} s)...")
                said = True
            sleep(pause)
