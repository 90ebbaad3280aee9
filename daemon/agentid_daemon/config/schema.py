"""The configuration schema: one table of every key, from which the rest derives.

Each :class:`Key` says where it may appear (the top level, ``[daemon]``,
``[defaults]``, ``[profiles.NAME]``, ``[git."HOST"]``, a token request), its
type as users read it, its default, its validator and its documentation. The
key sets (:func:`keys`), the validation of the file and of requests, their
error messages and the reference tables of docs/configuration.md
(:func:`reference_tables`) all come from :data:`SCHEMA`.

The validators and the dataclasses the values fill (:class:`Profile`,
:class:`DaemonSettings`) are in :mod:`config_values`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from agentid_client.contract import MAX_USER_TOKEN_CHARS
from agentid_client.redact import quoted

from ..core.errors import InvalidRequest
from ..core.models import DEFAULT_AUTHORITY_HOST, DEFAULT_SCOPE, Mode
from . import fields as F
from .claims import capabilities
from .values import (
    AUTOSTART_EXIT_WHEN_IDLE_S,
    CREDENTIAL_KINDS,
    DaemonSettings,
    Described,
    Validator,
    credential,
    did_you_mean,
    listen_value,
    path_value,
    plain,
    profile_ref,
    reason,
    scopes_value,
    uid_list,
)

Where = Literal["top", "daemon", "defaults", "profile", "git", "request"]

# Where a key may appear, and the heading of its reference table.
SECTIONS: dict[Where, str] = {
    "top": "Top level",
    "daemon": "`[daemon]`",
    "defaults": "`[defaults]`",
    "profile": "`[profiles.NAME]`",
    "git": '`[git."HOST"]`',
    "request": "token requests",
}
SELECTION: frozenset[Where] = frozenset({"defaults", "profile", "request"})
FILE_ONLY: frozenset[Where] = frozenset({"defaults", "profile"})


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # as the reference shows it
    where: frozenset[Where]
    doc: str
    validate: Validator
    default: str = ""  # as the reference shows it; "" = none
    env: str = ""  # environment variable supplying a default (below [defaults])


# ---- the table ----------------------------------------------------------------

SCHEMA: tuple[Key, ...] = (
    Key(
        "default_profile",
        "string",
        frozenset({"top"}),
        "the profile used when a request names none; must name a profile of the file",
        profile_ref,
    ),
    Key(
        "idle_timeout_s",
        "positive number",
        frozenset({"daemon"}),
        "a key not requested for this long stops being refreshed (a reload applies it)",
        plain(F.positive_number),
        default=f"{DaemonSettings().idle_timeout_s:g}",
    ),
    Key(
        "exit_when_idle_s",
        "number >= 0",
        frozenset({"daemon"}),
        "the daemon exits after this many seconds with nothing cached (no token, no OBO "
        "session, no `exec` session, no open connection); `0` = never. Absent: "
        f"{AUTOSTART_EXIT_WHEN_IDLE_S:g} for a daemon the client autostarted (the next "
        "command starts a new one), never for one "
        "run by systemd or in the foreground; when set, it applies to every run mode (a "
        "socket-activated daemon is started again by its socket). A reload applies it",
        plain(F.non_negative_number),
        default=f"{AUTOSTART_EXIT_WHEN_IDLE_S:g} (autostarted), 0 (otherwise)",
    ),
    Key(
        "managed_identity_listen",
        "string `HOST:PORT`",
        frozenset({"daemon"}),
        "a fixed managed identity endpoint (sidecar mode), opened at start-up; loopback "
        "addresses only (`127.0.0.1:8081`); needs `managed_identity_header_file`",
        listen_value,
    ),
    Key(
        "managed_identity_header_file",
        "path",
        frozenset({"daemon"}),
        "the sidecar session's `X-IDENTITY-HEADER`: read from this file (32 to 512 "
        'characters of `A-Z a-z 0-9 - . _ ~ + / =`; a credential file, see "Files the '
        'daemon trusts"), or created there (0600, 256 random bits, in a private directory '
        "made 0700 if missing) when absent; needs `managed_identity_listen`",
        path_value,
    ),
    Key(
        "managed_identity_profile",
        "string",
        frozenset({"daemon"}),
        "the profile whose tokens the sidecar session serves (default: `default_profile`); "
        "must name a profile of the file",
        profile_ref,
    ),
    Key(
        "managed_identity_allowed_uids",
        "array of integers",
        frozenset({"daemon"}),
        "other users (numeric uids) whose processes may connect to the managed identity "
        "endpoint, such as a pod's app container running as another uid than the sidecar; "
        "the daemon's own uid is always allowed, root only when listed. Connections from "
        "any other uid are closed before a byte is read (a reload applies it)",
        uid_list,
        default="[]",
    ),
    Key(
        "sidecar_api_listen",
        "string `HOST:PORT`",
        frozenset({"daemon"}),
        "serves the HTTP API of Microsoft's Agent ID sidecar (the Entra SDK for AgentID: "
        "`/AuthorizationHeader/{apiName}`, `/DownstreamApi/{apiName}`, `/Validate`, "
        "`/healthz`) on this address, opened at start-up; loopback addresses only "
        "(`127.0.0.1:5000`). Same peer rules as the managed identity endpoint "
        "(`managed_identity_allowed_uids`); configured by the sidecar's own "
        '`AzureAd__*`, `DownstreamApis__*` and `Sidecar__*` variables (see "The Agent ID '
        'sidecar API")',
        listen_value,
    ),
    Key(
        "obo_session_max_age_s",
        "positive number",
        frozenset({"daemon"}),
        "a long-running OBO session (`get --obo-session`) ends this long after a user "
        "token started it (24 h): its refresh token is forgotten and a user token must "
        "start it again (a reload applies it to running sessions)",
        plain(F.positive_number),
        default=f"{DaemonSettings().obo_session_max_age_s:g}",
    ),
    Key(
        "profile",
        "string",
        frozenset({"request"}),
        "the profile to use (default: `default_profile`)",
        plain(F.profile_name),
    ),
    Key(
        "tenant_id",
        "string",
        SELECTION,
        "a tenant GUID or a domain such as `contoso.onmicrosoft.com` (`common`, "
        "`organizations` and `consumers` are refused); lower-cased",
        plain(F.tenant),
        env="AZURE_TENANT_ID",
    ),
    Key(
        "authority_host",
        "string",
        FILE_ONLY,
        "`https://host[:port]` of the identity provider, without a path",
        plain(F.authority_host),
        default=DEFAULT_AUTHORITY_HOST,
        env="AZURE_AUTHORITY_HOST",
    ),
    Key(
        "ca_bundle",
        "path",
        FILE_ONLY,
        "PEM file of extra trusted CAs (a TLS proxy, the emulator), added to the system "
        "roots (OpenSSL's default CA directory or file, as `SSL_CERT_DIR`/`SSL_CERT_FILE` "
        "set them; certifi's bundle where the system has none); wins over "
        "`REQUESTS_CA_BUNDLE`",
        path_value,
    ),
    Key(
        "graph_endpoint",
        "string",
        FILE_ONLY,
        "`https://host[:port][/path]` of Microsoft Graph for `agent` and `agent-user` "
        "commands (the emulator's ready file names one); default: the cloud of "
        "`authority_host` (`https://graph.microsoft.com` for the public cloud)",
        plain(F.graph_endpoint),
    ),
    Key(
        "blueprint_app_id",
        "GUID",
        SELECTION,
        "the agent identity blueprint's app id (required after merging); the AKS workload "
        "identity webhook sets `AZURE_CLIENT_ID` to it",
        plain(F.guid),
        env="AZURE_CLIENT_ID",
    ),
    Key(
        "agent_identity_app_id",
        "GUID",
        SELECTION,
        "the agent identity's app id (required after merging)",
        plain(F.guid),
    ),
    Key(
        "scope",
        "string or array of strings",
        SELECTION,
        "space-separated scopes; `AutonomousApp` needs one `/.default` scope, the "
        "delegated modes also take short Graph scopes such as `User.Read`",
        scopes_value,
        default=DEFAULT_SCOPE,
    ),
    Key(
        "mode",
        "string",
        SELECTION,
        "`AutonomousApp`, `OBO` or `AutonomousUser` (any case)",
        plain(F.mode),
        default=Mode.AUTONOMOUS_APP.value,
    ),
    Key(
        "user_upn",
        "string",
        SELECTION,
        "the agent user (`name@domain`) for `AutonomousUser`; not with `user_object_id`",
        plain(F.upn),
    ),
    Key(
        "user_object_id",
        "GUID",
        SELECTION,
        "the agent user's object id for `AutonomousUser`",
        plain(F.guid),
    ),
    Key(
        "user_token",
        "string",
        frozenset({"request"}),
        f"the signed-in user's token (a JWT, at most {MAX_USER_TOKEN_CHARS} characters) "
        "for `OBO`; never in the file",
        plain(F.user_token),
    ),
    Key(
        "obo_session",
        "string",
        frozenset({"request"}),
        "`OBO` only: the name of a long-running session (1-128 letters, digits or "
        "`. _ - : @`); with a `user_token` it starts the session, without one it "
        "continues it (see Long-running OBO sessions)",
        plain(F.obo_session_name),
    ),
    Key(
        "blueprint_credential",
        '"keyring" or table',
        FILE_ONLY,
        'where the blueprint\'s credential comes from: `"keyring"`, '
        '`"workload_identity"`, or one of '
        + ", ".join(f"`{{ {kind} = ... }}`" for kind in CREDENTIAL_KINDS),
        credential,
        default='"keyring"',
    ),
    Key(
        "client_capabilities",
        "array of strings",
        SELECTION,
        'capabilities declared to Entra through MSAL\'s `client_capabilities`: `["cp1"]` '
        "says the client handles claims challenges, so CAE-enabled resources issue "
        "long-lived tokens they can revoke (answered with `get --claims`); cached apart "
        "from tokens without. A request's list adds to the profile's",
        plain(capabilities),
    ),
    Key(
        "profile",
        "string",
        frozenset({"git"}),
        "the profile whose token git gets for this host; must name a profile of the file",
        profile_ref,
    ),
)

_TABLES = frozenset({"daemon", "defaults", "profiles", "git"})


def keys(where: Where) -> tuple[str, ...]:
    """The keys allowed in ``where``, in table order."""
    return tuple(k.name for k in SCHEMA if where in k.where)


def top_keys() -> tuple[str, ...]:
    return (*keys("top"), *sorted(_TABLES))


def key(where: Where, name: str) -> Key:
    for candidate in SCHEMA:
        if candidate.name == name and where in candidate.where:
            return candidate
    raise KeyError(f"no key {name!r} in {where}")


def env_defaults() -> tuple[Key, ...]:
    """The keys an environment variable supplies a default for."""
    return tuple(k for k in SCHEMA if k.env and "defaults" in k.where)


def check_request(name: str, value: Any) -> Any:
    """Validate one request field; unknown names and bad values are InvalidRequest."""
    allowed = keys("request")
    if name not in allowed:
        raise InvalidRequest(f"unknown request field {quoted(name)}{did_you_mean(name, allowed)}")
    try:
        return key("request", name).validate(value, None)
    except Described as exc:
        raise InvalidRequest(f"{name}: {exc}") from None
    except ValueError as exc:
        raise InvalidRequest(f"{name} {reason(exc)}") from None


# ---- reference ----------------------------------------------------------------


_MARK = re.compile(r"(<!-- schema:(\w+) -->\n)(.*?)(<!-- /schema -->)", re.DOTALL)


def splice_reference(doc: str) -> str:
    """``doc`` with every ``<!-- schema:WHERE -->`` block replaced by its table."""

    def table(match: re.Match[str]) -> str:
        for where in SECTIONS:
            if where == match.group(2):
                return match.group(1) + reference_table(where) + match.group(4)
        raise ValueError(f"unknown schema section {match.group(2)!r}")

    return _MARK.sub(table, doc)


def reference_table(where: Where) -> str:
    """The markdown table of the keys allowed in ``where`` (docs/configuration.md)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in SCHEMA:
        if where not in k.where:
            continue
        default = f"`{k.default}`" if k.default else "none"
        if k.env:
            default = f"`${k.env}`, else {default}"
        rows.append(f"| `{k.name}` | {k.type} | {default} | {k.doc} |")
    return "\n".join(rows) + "\n"
