"""``init``'s answers: what it asks, their defaults, and the checks made before
anything is created.

:class:`InitAnswers` is every answer, checked; :func:`answers_from_options`
builds it from the command's options (``--non-interactive``: a missing
answer is a usage error naming its flag) or, interactively, from
:class:`Prompter` questions in a terminal's habits: the default in brackets,
Enter takes it, a bad answer is said and asked again, end of input or
Ctrl-C aborts before anything exists.

Every check here runs before the first Graph call, so a typo never leaves a
half-created blueprint behind: GUIDs, the tenant (a GUID or a domain, as the
config file takes it), names at most Graph's 256 characters, UPNs, the
profile names (new ones only: an existing profile is never overwritten), the
credential kind and its paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from agentid_client.redact import quoted

from ..config import fields as F
from ..core.errors import InvalidRequest
from ..core.models import DEFAULT_AUTHORITY_HOST
from . import graph as G
from .profile_file import check_new_name

#: Microsoft Graph Command Line Tools: the public client Microsoft's own
#: ``Connect-MgGraph`` signs in with (``init --client-id`` replaces it).
GRAPH_COMMAND_LINE_TOOLS = "14d82eec-204b-4c2f-b7e8-296a70dab67e"

#: How the new blueprint authenticates: (answer, what it does). The first is
#: the default on a desktop; create-blueprint.md recommends a managed
#: identity in production and a secret for local development.
CREDENTIAL_KINDS: tuple[tuple[str, str], ...] = (
    ("keyring", "a client secret, stored straight into the keyring (Secret Service)"),
    ("secret-file", "a client secret, stored into a 0600 file"),
    ("certificate", "a certificate generated here; its key stays in a 0600 PEM file"),
    ("managed-identity", "this host's managed identity, as a federated credential"),
)
CREDENTIAL_NAMES = tuple(name for name, _ in CREDENTIAL_KINDS)


@dataclass(frozen=True)
class InitAnswers:
    """Every answer ``init`` needs, checked (see the module docstring)."""

    tenant: str  # a GUID or a domain; the profile gets the signed-in tenant's GUID
    authority_host: str
    blueprint_name: str
    agent_name: str
    profile: str  # the new AutonomousApp profile
    credential: str  # one of CREDENTIAL_NAMES
    config_path: Path
    client_id: str = GRAPH_COMMAND_LINE_TOOLS
    sponsors: tuple[str, ...] = ()  # empty: the signed-in administrator
    graph_endpoint: str | None = None
    ca_bundle: str | None = None
    graph_token_file: str | None = None
    credential_file: Path | None = None  # secret-file, certificate
    managed_identity: str | None = None  # "system" or a client id
    managed_identity_principal_id: str | None = None  # the federated subject
    agent_user_upn: str | None = None
    user_profile: str | None = None  # the AutonomousUser profile of the agent user

    @property
    def graph_base(self) -> str:
        """Graph's endpoint: as given, else the cloud of ``authority_host``."""
        return self.graph_endpoint or G.graph_resource(self.authority_host)


class Prompter:
    """Questions on a terminal: ``question [default]: `` on ``output``, the
    answer from ``input``. End of input raises :class:`EOFError`."""

    def __init__(self, input: TextIO, output: TextIO) -> None:
        self._input = input
        self._output = output

    def say(self, text: str) -> None:
        self._output.write(text + "\n")
        self._output.flush()

    def ask(
        self,
        question: str,
        default: str | None = None,
        check: Callable[[str], str] | None = None,
        *,
        optional: bool = False,
    ) -> str | None:
        """The answer (``default`` for an empty line; None when ``optional`` and
        empty), asked again while ``check`` raises InvalidRequest/ValueError."""
        shown = f" [{default}]" if default else (" (Enter to skip)" if optional else "")
        while True:
            self._output.write(f"{question}{shown}: ")
            self._output.flush()
            line = self._input.readline()
            if not line:
                raise EOFError
            answer = line.strip() or default
            if not answer:
                if optional:
                    return None
                self.say("  an answer is needed")
                continue
            try:
                return check(answer) if check else answer
            except (InvalidRequest, ValueError) as exc:
                self.say(f"  {exc}")


def _field(check: Callable[[Any], str], what: str) -> Callable[[str], str]:
    """A config field validator whose ValueError names ``what``."""

    def run(value: str) -> str:
        try:
            return check(value)
        except ValueError as exc:
            raise InvalidRequest(f"{what}: {exc}") from None

    return run


def _name(what: str) -> Callable[[str], str]:
    return lambda value: G.check_display_name(value, what)


def _credential(value: str) -> str:
    if value not in CREDENTIAL_NAMES:
        raise InvalidRequest(f"credential {quoted(value)} is none of {', '.join(CREDENTIAL_NAMES)}")
    return value


def _managed_identity(value: str) -> str:
    return "system" if value.lower() == "system" else G.check_guid(value, "managed identity")


def _sponsor(value: str) -> str:
    text = value.strip()
    return G.check_guid(text, "sponsor") if G.is_guid(text) else G.check_upn(text)


def _slug(name: str) -> str:
    """A profile name from a display name: ``Build Bot`` -> ``build-bot``."""
    out = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    while "--" in out:
        out = out.replace("--", "-")
    return out[:64] or "agent"


def default_credential_file(config_path: Path, profile: str, credential: str) -> Path:
    """Next to the config file: ``<profile>.secret`` or ``<profile>.pem``."""
    suffix = ".pem" if credential == "certificate" else ".secret"
    return config_path.parent / f"{profile}{suffix}"


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def answers_from_options(
    options: Mapping[str, Any],
    *,
    config_path: Path,
    existing_profiles: tuple[str, ...],
    prompter: Prompter | None,
) -> InitAnswers:
    """:class:`InitAnswers` from ``options`` (the command's flags by destination),
    asking ``prompter`` for what is missing; without one (``--non-interactive``)
    a missing answer is :class:`InvalidRequest` naming its flag."""

    def answer(
        dest: str,
        question: str,
        check: Callable[[str], str],
        default: str | None = None,
        *,
        optional: bool = False,
    ) -> str | None:
        given = options.get(dest)
        if given is not None and str(given).strip():
            return check(str(given))
        if prompter is None:
            if default is not None or optional:
                return check(default) if default is not None else None
            raise InvalidRequest(f"init --non-interactive: {_flag(dest)} is required")
        return prompter.ask(question, default, check, optional=optional)

    def required(
        dest: str, question: str, check: Callable[[str], str], default: str | None = None
    ) -> str:
        value = answer(dest, question, check, default)
        assert value is not None  # not optional
        return value

    def new_profile(value: str) -> str:
        return check_new_name(value, existing_profiles)

    tenant = required("tenant_id", "Tenant (GUID or domain)", _field(F.tenant, "tenant"))
    authority = required(
        "authority_host",
        "Authority host",
        _field(F.authority_host, "authority host"),
        DEFAULT_AUTHORITY_HOST,
    )
    given_graph = options.get("graph_endpoint")  # not asked: the cloud's is right
    graph_endpoint = (
        _field(F.graph_endpoint, "graph endpoint")(given_graph) if given_graph else None
    )
    blueprint_name = required(
        "blueprint_name", "Blueprint name", _name("blueprint name"), "agentid-helper blueprint"
    )
    agent_name = required("agent_name", "Agent identity name", _name("agent name"))
    profile = required("save_profile", "Profile name", new_profile, _slug(agent_name))
    sponsors = tuple(_sponsor(str(s)) for s in options.get("sponsor") or ())
    if not sponsors and prompter is not None:
        asked = prompter.ask(
            "Sponsor (user object id or UPN; Enter: you, the signed-in administrator)",
            None,
            _sponsor,
            optional=True,
        )
        sponsors = (asked,) if asked else ()
    if prompter is not None and not options.get("credential"):
        for name, what in CREDENTIAL_KINDS:
            prompter.say(f"  {name:<17} {what}")
    credential = required("credential", "Blueprint credential", _credential, CREDENTIAL_NAMES[0])
    credential_file: Path | None = None
    managed_identity = principal_id = None
    if credential in ("secret-file", "certificate"):
        default_file = str(default_credential_file(config_path, profile, credential))
        credential_file = Path(
            os.path.abspath(
                os.path.expanduser(
                    required("credential_file", "Credential file", _new_file, default_file)
                )
            )
        )
    elif options.get("credential_file"):
        raise InvalidRequest(
            f"init: --credential-file applies to secret-file and certificate, not {credential}"
        )
    if credential == "managed-identity":
        managed_identity = required(
            "managed_identity",
            "Managed identity (system or a user-assigned client id)",
            _managed_identity,
            "system",
        )
        principal_id = required(
            "managed_identity_principal_id",
            "Its principal (object) id: the federated credential's subject",
            lambda v: G.check_guid(v, "managed identity principal id"),
        )
    upn = answer("agent_user_upn", "Agent user UPN", lambda v: G.check_upn(v), optional=True)
    user_profile = None
    if upn:
        user_profile = required(
            "user_profile", "Agent user profile name", new_profile, f"{profile}-user"[:64]
        )
        if user_profile == profile:
            raise InvalidRequest("init: the agent user's profile needs a name of its own")
    client_id = required(
        "client_id", "Sign-in client id", _field(F.guid, "client id"), GRAPH_COMMAND_LINE_TOOLS
    )
    ca_bundle = options.get("ca_bundle")
    token_file = options.get("graph_token_file")
    return InitAnswers(
        tenant=tenant,
        authority_host=authority,
        blueprint_name=blueprint_name,
        agent_name=agent_name,
        profile=profile,
        credential=credential,
        config_path=config_path,
        client_id=client_id,
        sponsors=sponsors,
        graph_endpoint=graph_endpoint,
        ca_bundle=os.path.abspath(os.path.expanduser(str(ca_bundle))) if ca_bundle else None,
        graph_token_file=str(token_file) if token_file else None,
        credential_file=credential_file,
        managed_identity=managed_identity,
        managed_identity_principal_id=principal_id,
        agent_user_upn=upn,
        user_profile=user_profile,
    )


def _new_file(value: str) -> str:
    """A credential file ``init`` may create: it must not exist (never overwritten)."""
    path = os.path.expanduser(value)
    if os.path.lexists(path):
        raise InvalidRequest(
            f"{path} exists: init never overwrites a credential file; name another one"
        )
    return path
