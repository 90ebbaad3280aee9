"""Facts both sides of the socket rely on, stated once (see docs/api.md).

The client may import nothing heavier than the standard library on its hot
paths, and never the daemon; so these facts live here, in a module that
imports nothing, and the daemon imports them from the client package.
"""

from __future__ import annotations

# The modes, as Entra's PowerShell cmdlet spells them (models.Mode has these values).
MODES = ("AutonomousApp", "OBO", "AutonomousUser")

# The request fields that select a token (POST/DELETE /v1/token, POST /v1/flush).
# The client's selection flags are these but FLAGLESS_FIELDS.
SELECTION_FIELDS = (
    "profile",
    "tenant_id",
    "blueprint_app_id",
    "agent_identity_app_id",
    "scope",
    "mode",
    "user_upn",
    "user_object_id",
    "user_token",
    "obo_session",
    "client_capabilities",
)
# Selection fields that take a JSON array of strings as well as a string.
LIST_FIELDS = ("scope", "client_capabilities")
# Selection fields without a selection flag: user_token comes from
# --user-token-file (argv is visible to every user), obo_session has its own
# flag on `get` and `flush`, client_capabilities is a profile key (and what
# the Python credential's enable_cae asks for).
FLAGLESS_FIELDS = ("user_token", "obo_session", "client_capabilities")

# Options of POST /v1/token, handled by the broker rather than by profile resolution.
TOKEN_OPTIONS = ("min_validity_s", "force_refresh", "claims")

# min_validity_s: a cached token with less left is not served. Entra's tokens
# live 60-90 minutes, so more than an hour would refuse every cached token.
DEFAULT_MIN_VALIDITY_S = 300
MAX_MIN_VALIDITY_S = 3600


def min_validity_ok(seconds: float) -> bool:
    """Whether ``seconds`` is a ``min_validity_s`` both sides accept: 0..MAX_MIN_VALIDITY_S.

    The one statement of the rule: ``--min-validity`` (cli.py), the request
    body (the daemon's api/bodies.py) and the broker all ask here. NaN is not
    in the range (every comparison with it is false), nor is infinity.
    """
    return 0 <= seconds <= MAX_MIN_VALIDITY_S


# An OBO user token (a JWT) longer than this is refused by both sides.
MAX_USER_TOKEN_CHARS = 32_768


def git_key(host: str) -> str:
    """The canonical key of a ``[git."HOST[/path]"]`` table: lower case, no edge slashes."""
    return host.strip().strip("/").lower()


# The port a URL without one means; a [git."HOST"] table matches only that port.
DEFAULT_PORTS = {"https": "443", "http": "80"}


def git_profile(
    mapping: dict[str, str], host: str, path: str = "", protocol: str = "https"
) -> str | None:
    """The profile mapped to git's ``host`` and ``path`` in ``{git_key: profile}``.

    The longest ``host/path`` prefix (segment by segment) wins, then the host.
    A host with the protocol's default port (``dev.azure.com:443`` over https)
    is tried again without it; any other port matches only a table naming it
    (``[git."host:8443"]``): another port may be another server, which must not
    receive this host's token. ``None`` when nothing matches, so that git asks
    its next helper.
    """
    host = git_key(host)
    if not host:
        return None
    segments = [s for s in path.strip("/").split("/") if s]
    for n in range(len(segments), -1, -1):
        found = mapping.get("/".join([host, *segments[:n]]))
        if found is not None:
            return found
    bare, colon, port = host.rpartition(":")
    if colon and "]" not in port and port == DEFAULT_PORTS.get(protocol.lower()):
        return git_profile(mapping, bare, path, protocol)
    return None


# Start-up report of an autostarted daemon (autostart.py waits on it, the daemon's
# start_report.py writes it): the client passes the write end of a pipe as the
# file descriptor named by READY_FD_ENV; the daemon writes one line and closes
# it: READY_LINE once its socket accepts connections, or
# "<START_FAILED_PREFIX><exit status> <its error line>" when it cannot start.
READY_FD_ENV = "AGENTID_HELPER_READY_FD"
READY_LINE = "ready"
START_FAILED_PREFIX = "exit "

# The token request that made a client autostart the daemon, as a JSON object:
# its WARM_REQUEST_FIELDS as the request has them, but "claims": true when a
# claims challenge came (never a user token, no other option). The daemon's engine host
# resolves it as the daemon will, builds its agent's MSAL clients and makes
# its first legs while the daemon imports the rest of itself; the broker's
# identical calls get those answers (agentid_daemon.process.engine_host).
WARM_REQUEST_ENV = "AGENTID_HELPER_WARM_REQUEST"
WARM_REQUEST_FIELDS = (
    *(name for name in SELECTION_FIELDS if name != "user_token"),
    "claims",
)

# The first answer of an autostarted daemon (autostart.ensure_daemon, the
# daemon's process/first_answer.py): the client passes one end of a socket
# pair as the descriptor named by FIRST_ANSWER_FD_ENV and writes its request's
# body (at most FIRST_REQUEST_MAX_BYTES) on its own end, then shuts its writing
# side. The daemon's engine host answers with the body of the 200 that
# POST /v1/token would have sent, then closes; or closes without a byte, and
# the client asks the daemon on its socket once it listens. A client that got
# its answer so may exit before the daemon listens: it passes its start lock
# (the descriptor named by START_LOCK_FD_ENV), which the daemon holds until it
# has sent its start report, so no other client starts a second daemon meanwhile.
FIRST_ANSWER_FD_ENV = "AGENTID_HELPER_FIRST_ANSWER_FD"
START_LOCK_FD_ENV = "AGENTID_HELPER_START_LOCK_FD"
FIRST_REQUEST_MAX_BYTES = 64 * 1024
# How long an autostarting client waits for the start report; the daemon holds a
# start lock it was given no longer than that either, so one that hangs before
# its report keeps other clients waiting no longer than its starter would have.
START_TIMEOUT_S = 5.0


def is_profile_name(name: str) -> bool:
    """The config's rule for a ``[profiles.NAME]`` name: anything but blank
    (agentid_daemon.config.file refuses a blank one; a test ties the two)."""
    return bool(name.strip())


# What `exec` exports for the Azure SDKs (App Service managed identity protocol).
IDENTITY_ENDPOINT_VAR = "IDENTITY_ENDPOINT"
IDENTITY_HEADER_VAR = "IDENTITY_HEADER"
# Inherited variables that would make azure-identity or MSAL pick another
# managed identity source over IDENTITY_ENDPOINT + IDENTITY_HEADER (Service
# Fabric, Azure Arc, Azure ML / Cloud Shell): `exec` removes them from CMD's
# environment; an autostarted daemon inherits all of these (its
# managed_identity credentials read them, as MSAL does).
SHADOWING_MI_VARS = ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT")
MANAGED_IDENTITY_VARS = (IDENTITY_ENDPOINT_VAR, IDENTITY_HEADER_VAR, *SHADOWING_MI_VARS)
