"""The command table: every command of the client CLI, its options and
its ``--help`` examples (scripts, kubectl, git), with the program's summary,
exit codes and environment. Parsed by :mod:`cliargs`, rendered for ``--help``
by :mod:`helptext`, and into the man page and shell completions by
:mod:`docgen`.
"""

from __future__ import annotations

from .cliargs import Command, Opt, Pos
from .contract import (
    DEFAULT_MIN_VALIDITY_S,
    FLAGLESS_FIELDS,
    MAX_MIN_VALIDITY_S,
    MODES,
    SELECTION_FIELDS,
)
from .daemon_api import MAX_TIMEOUT_S
from .hotpath import FORMATS as FORMATS

PROGRAM = "agentid-helper"
SUMMARY = "per-user credential helper for Microsoft Entra agent identities"
ABOUT = (
    "A local daemon (started on demand) acquires agent tokens, caches them and "
    "refreshes them ahead of expiry; this client fetches them for scripts, kubectl, "
    "git and any command."
)
EXIT_CODES = (
    (0, "ok"),
    (2, "usage or invalid input"),
    (3, "daemon unreachable, or no answer within --timeout"),
    (4, "the identity provider refused"),
    (5, "configuration error"),
    (130, "interrupted (Ctrl-C), or init's questions met the end of input"),
)
ENVIRONMENT = (
    (
        "AGENTID_HELPER_SOCKET",
        "daemon socket (default $XDG_RUNTIME_DIR/agentid-helper/agentid-helper.sock)",
    ),
    (
        "AGENTID_HELPER_CONFIG",
        "config file (default $XDG_CONFIG_HOME/agentid-helper/config.toml)",
    ),
    ("AGENTID_HELPER_NO_AUTOSTART", "set to 1 to never start the daemon from the client"),
    ("AGENTID_HELPER_TIMEOUT", "seconds a call may take in all (default 60; --timeout wins)"),
    (
        "AZURE_TOKEN_CREDENTIALS",
        "exec sets it to ManagedIdentityCredential for CMD unless set; set it (even empty: "
        "the SDK's default chain) to keep DefaultAzureCredential's other credentials",
    ),
)
EXAMPLES = """\
  agentid-helper get --profile graph-bot                       # scripts
  agentid-helper exec -- az rest --url https://graph.microsoft.com/v1.0/me
  agentid-helper kubeconfig-user --profile aks                 # kubectl exec plugin
  git config --global credential.https://dev.azure.com.helper "agentid-helper git-credential"
  agentid-helper status; agentid-helper doctor
"""


def _selection() -> list[Opt]:
    return [
        Opt("--profile", "profile name from config.toml (default: default_profile)", metavar="P"),
        Opt("--tenant-id", "Entra tenant id (GUID)", metavar="T"),
        Opt("--blueprint-app-id", "agent identity blueprint app id (GUID)", metavar="B"),
        Opt("--agent-identity-app-id", "agent identity app id (GUID)", metavar="A"),
        Opt(
            "--scope",
            "space-separated scopes; may be repeated (default: the profile's, else "
            "https://graph.microsoft.com/.default)",
            kind="append",
            metavar="S",
        ),
        Opt("--mode", "token flow", choices=MODES),
        Opt("--user-upn", "agent user UPN (AutonomousUser)", metavar="U"),
        Opt("--user-object-id", "agent user object id (AutonomousUser)", metavar="O"),
        Opt(
            "--user-token-file",
            "file holding the user's token for OBO, or - for stdin (never on the command line);"
            " it must be issued for the agent's blueprint (api://<blueprint>/access_agent)",
            metavar="PATH",
        ),
    ]


def _timeout() -> Opt:
    return Opt(
        "--timeout",
        f"give up after S seconds in all (0 < S <= {MAX_TIMEOUT_S:g}; default "
        "$AGENTID_HELPER_TIMEOUT or 60); the client waits through a busy or restarting "
        "daemon until then",
        metavar="S",
    )


def _obo_session(text: str) -> Opt:
    return Opt("--obo-session", text, metavar="N")


# The selection flags' destinations: the request's selection fields but those
# without a selection flag (contract.FLAGLESS_FIELDS).
SELECTION_DESTS = tuple(f for f in SELECTION_FIELDS if f not in FLAGLESS_FIELDS)

COMMANDS: dict[str, Command] = {}


def _add(cmd: Command) -> None:
    COMMANDS[cmd.name] = cmd


_add(
    Command(
        "get",
        "print an access token",
        [
            *_selection(),
            Opt(
                "--min-validity",
                "serve only a token valid at least S more seconds "
                f"(default {DEFAULT_MIN_VALIDITY_S}, at most {MAX_MIN_VALIDITY_S})",
                metavar="S",
            ),
            Opt("--force-refresh", "ask the identity provider for a new token", kind="flag"),
            _timeout(),
            Opt(
                "--claims",
                'a resource\'s claims challenge (the claims="..." of its WWW-Authenticate '
                "header, base64 or JSON): ask the identity provider, never the cache",
                metavar="C",
            ),
            _obo_session("OBO: continue session N without a user token, or start it with one"),
            Opt(
                "--format",
                "output: the token (default), the JSON response, an Authorization header, "
                "or the JSON of `az account get-access-token`",
                choices=FORMATS,
            ),
        ],
        epilog="""examples:
  # call Microsoft Graph from a script with the default profile
  curl -H "$(agentid-helper get --format header)" https://graph.microsoft.com/v1.0/me
  TOKEN=$(agentid-helper get --profile graph-bot --scope https://vault.azure.net/.default)
  # on behalf of a signed-in user (the user token comes from a file or stdin, never argv)
  agentid-helper get --profile bot --mode OBO --user-token-file - < user-token.jwt
  # long-running work for that user: start a session once, continue without the user token
  agentid-helper get --profile bot --mode OBO --obo-session job-42 --user-token-file user-token.jwt
  agentid-helper get --profile bot --mode OBO --obo-session job-42   # hours later
  # a resource answered 401 with error="insufficient_claims", claims="eyJhY2Nlc3..."
  # (pass that base64 value, or the JSON it decodes to)
  agentid-helper get --claims eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ
  # as the agent's own user account
  agentid-helper get --profile bot --mode AutonomousUser --user-upn a@contoso.com --scope User.Read
  agentid-helper get --format json | jq .expires_on
  agentid-helper get --format az --scope https://management.azure.com/.default   # az's JSON
""",
    )
)

_add(
    Command(
        "kubectl-credential",
        "print a kubectl ExecCredential (exec credential plugin)",
        [*_selection(), _timeout()],
        epilog="""examples:
  # kubeconfig users: entry (or generate it: agentid-helper kubeconfig-user --profile aks)
  #   exec:
  #     apiVersion: client.authentication.k8s.io/v1
  #     command: /usr/local/bin/agentid-helper
  #     args: [kubectl-credential, --profile, aks]
  #     interactiveMode: Never
  agentid-helper kubeconfig-user --profile aks >> ~/.kube/config-users.yaml
  KUBERNETES_EXEC_INFO='{"apiVersion":"client.authentication.k8s.io/v1beta1"}' \\
      agentid-helper kubectl-credential --profile aks
""",
    )
)

_add(
    Command(
        "git-credential",
        "git credential helper (gitcredentials(7))",
        [
            Opt(
                "--profile",
                'profile to use for every host (default: the [git."HOST"] table of config.toml)',
                metavar="P",
            ),
            _timeout(),
        ],
        positionals=(Pos("operation", "get, store or erase (sent by git)"),),
        epilog="""examples:
  # map a host to a profile in config.toml:
  #   [git."dev.azure.com"]
  #   profile = "repo-bot"
  git config --global credential.https://dev.azure.com.helper "agentid-helper git-credential"
  # or name the profile in the helper itself
  git config --global credential.https://dev.azure.com.helper \\
      "agentid-helper git-credential --profile repo-bot"
  printf 'protocol=https\\nhost=dev.azure.com\\n\\n' | agentid-helper git-credential get
""",
    )
)

_add(
    Command(
        "exec",
        "run a command with a token and a managed identity endpoint in its environment",
        [
            *_selection(),
            Opt(
                "--env-var",
                "environment variable receiving the token (default AGENTID_ACCESS_TOKEN)",
                metavar="NAME",
            ),
            Opt(
                "--no-identity-endpoint",
                "do not set IDENTITY_ENDPOINT/IDENTITY_HEADER (the managed identity endpoint "
                "the Azure SDKs use) nor AZURE_TOKEN_CREDENTIALS",
                kind="flag",
            ),
            Opt(
                "--no-token-env",
                "put no token in the environment (no AGENTID_ACCESS_TOKEN): CMD starts "
                "without waiting for one, even while Entra is down, and gets its tokens from "
                "the managed identity endpoint",
                kind="flag",
            ),
            _timeout(),
        ],
        rest="command",
        epilog="""examples:
  agentid-helper exec -- sh -c 'curl -H "Authorization: Bearer $AGENTID_ACCESS_TOKEN" https://graph.microsoft.com/v1.0/users'
  agentid-helper exec --profile ops --env-var AZURE_ACCESS_TOKEN -- ./deploy.sh
  # Azure SDK programs (ManagedIdentityCredential, DefaultAzureCredential) get the
  # agent's tokens, fresh for as long as the command runs, with no code change:
  agentid-helper exec --profile graph-bot -- python3 my_agent.py
  # exec sets AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential unless it is set, so that
  # DefaultAzureCredential fails rather than fall through to `az login` or another identity;
  # to keep the whole chain, set it yourself (empty: the SDK's default chain):
  AZURE_TOKEN_CREDENTIALS= agentid-helper exec --profile graph-bot -- python3 my_agent.py
  # a service that must start even while Entra is down (the endpoint serves it later):
  agentid-helper exec --no-token-env --profile graph-bot -- python3 my_service.py
  # CMD's exit status is the result (126/127 when it cannot run; death by a signal is
  # passed on). With the endpoint, exec stays beside CMD and owns the endpoint's port
  # while CMD lives, forwarding signals; with --no-identity-endpoint it becomes CMD.
""",
    )
)

_add(
    Command(
        "status",
        "show cached tokens (never token values)",
        [
            Opt("--json", "print the daemon's raw JSON", kind="flag"),
        ],
        epilog="""examples:
  agentid-helper status
  agentid-helper status --json | jq '.entries[] | {profile, mode, expires_on}'
""",
    )
)

_add(
    Command(
        "flush",
        "drop cached tokens",
        [
            *_selection(),
            _obo_session("end OBO session N (its refresh token and tokens)"),
            Opt("--all", "drop every cached token and end every OBO session", kind="flag"),
            Opt("--json", "print what was dropped as JSON", kind="flag"),
        ],
        epilog="""examples:
  # --profile P alone drops every token of the profile: all its scopes, modes and
  # users, and its agent's T1/T2 exchange tokens unless another profile's tokens
  # use them; more selection flags drop only the selected token; no arguments: the
  # default profile. Prints what was dropped; no daemon running: nothing to drop (0).
  agentid-helper flush --profile graph-bot    # next get re-acquires
  agentid-helper flush --profile aks          # kubectl: "You must be logged in to the server"
  agentid-helper flush --profile bot --mode OBO --obo-session job-42
  agentid-helper flush --all
""",
    )
)

_add(
    Command(
        "reload",
        "re-read config.toml now and say what happened",
        [],
        epilog="""examples:
  agentid-helper reload      # loaded (profiles added, removed, changed), unchanged, or the error
  agentid-helper reload || echo "config.toml has an error; the daemon kept the old one"
  # without a signal too: a changed config.toml is re-read at the next request
  # exit 0: loaded or unchanged; 5: the file has an error (the daemon keeps the old
  # configuration); 3: the daemon did not answer; no daemon running: nothing to do (0)
""",
    )
)

_add(
    Command(
        "secret",
        "store or delete a blueprint secret in the keyring",
        [
            Opt(
                "--blueprint-app-id", "blueprint app id (GUID): the keyring user name", metavar="B"
            ),
        ],
        positionals=(Pos("action", "set or delete", ("set", "delete")),),
        epilog="""examples:
  agentid-helper secret set --blueprint-app-id 11111111-2222-3333-4444-555555555555  # prompts
  pass show entra/bp | agentid-helper secret set --blueprint-app-id 1111...          # from stdin
  agentid-helper secret delete --blueprint-app-id 11111111-2222-3333-4444-555555555555
  # keyring entry: service "agentid-helper", user = the blueprint app id
""",
    )
)

_add(
    Command(
        "daemon",
        "run the daemon in the foreground (same as agentid-helperd)",
        [],
        rest="passthrough",
        epilog="""examples:
  agentid-helper daemon            # arguments after `daemon` go to agentid-helperd
  agentid-helper daemon --log-level debug --log-format console
  agentid-helperd --help           # the daemon's own options
  systemctl --user start agentid-helper.socket   # or let systemd start it on demand
""",
    )
)

_add(
    Command(
        "logs",
        "show the daemon's log (the autostart log, or the journal under systemd)",
        [
            Opt(
                "--follow",
                "keep printing what the daemon logs (Ctrl-C ends)",
                kind="flag",
                short="-f",
            ),
            Opt("--lines", "print the last N lines first (default 100)", metavar="N", short="-n"),
        ],
        epilog="""examples:
  # an autostarted daemon logs to agentid-helperd.log next to the socket (.log.1: the
  # previous one); under the systemd units this runs journalctl --user -u
  # agentid-helper.service. `status` and `doctor` show where. Exit 0, also with no log.
  agentid-helper logs -n 20
  agentid-helper logs -f      # Ctrl-C ends
""",
    )
)

_add(
    Command(
        "stop",
        "stop the daemon (the systemd units, when they run it)",
        [],
        epilog="""examples:
  # asks the daemon to exit gracefully (POST /v1/shutdown: in-flight requests finish,
  # the socket goes) and waits for it; under the systemd units it stops
  # agentid-helper.socket and agentid-helper.service. The next command starts it
  # again. No daemon running: says so, exit 0; exit 3 when the daemon does not stop.
  agentid-helper stop
  agentid-helper stop && agentid-helper get    # a fresh daemon, with the new environment
""",
    )
)

_add(
    Command(
        "doctor",
        "check config, socket, daemon, keyring and each profile",
        [],
        epilog="""examples:
  agentid-helper doctor && echo all good
""",
    )
)

_add(
    Command(
        "kubeconfig-user",
        "print a kubeconfig users: entry that runs this helper, or merge it into one",
        [
            Opt("--profile", "profile the entry requests tokens for (required)", metavar="P"),
            Opt("--name", "user entry name (default agentid-helper-P)", metavar="N"),
            Opt(
                "--merge",
                "write the entry into the kubeconfig FILE instead of printing it (default: "
                "kubectl's own, the first of $KUBECONFIG or ~/.kube/config), through kubectl; "
                "atomically, mode kept, the previous file kept as FILE.bak",
                kind="optional",
                metavar="FILE",
            ),
        ],
        epilog="""examples:
  agentid-helper kubeconfig-user --profile aks --name aks-bot
  kubectl config set-context aks --cluster aks --user aks-bot
  agentid-helper kubeconfig-user --profile aks --merge      # into ~/.kube/config
  agentid-helper kubeconfig-user --profile aks --merge ~/.kube/aks.yaml
""",
    )
)

_add(
    Command(
        "completion",
        "print the bash or zsh completion script",
        [],
        positionals=(
            Pos(
                "shell",
                "bash or zsh; profiles prints the config's profile names (what the "
                "scripts complete --profile with)",
                ("bash", "zsh", "profiles"),
            ),
        ),
        epilog="""examples:
  # bash: add to ~/.bashrc
  eval "$(agentid-helper completion bash)"
  # zsh: add to ~/.zshrc, after compinit
  source <(agentid-helper completion zsh)
  agentid-helper completion profiles   # graph-bot, aks, ...: what --profile <TAB> offers
""",
    )
)

_add(
    Command(
        "systemd",
        "install or remove the systemd --user units",
        [
            Opt("--now", "also enable and start the socket unit", kind="flag"),
        ],
        positionals=(Pos("action", "install or uninstall", ("install", "uninstall")),),
        epilog="""examples:
  agentid-helper systemd install --now
  agentid-helper systemd uninstall
""",
    )
)

#: ``init --credential`` kinds (tied to the daemon's init_answers.CREDENTIAL_NAMES by a test).
INIT_CREDENTIALS = ("keyring", "secret-file", "certificate", "managed-identity")

_add(
    Command(
        "init",
        "create a blueprint, its credential and an agent identity, write the profile, "
        "get a first token",
        [
            Opt(
                "--non-interactive",
                "ask nothing: every answer from the flags (--tenant-id and --agent-name "
                "required), for scripts",
                kind="flag",
            ),
            Opt("--tenant-id", "the tenant: a GUID or a domain such as contoso.onmicrosoft.com"),
            Opt(
                "--graph-token-file",
                "an administrator's Microsoft Graph token in this file (not readable by others; "
                "`az account get-access-token --resource https://graph.microsoft.com`'s JSON or "
                "the bare token) instead of the device code sign-in",
                metavar="F",
            ),
            Opt(
                "--client-id",
                "the public client the administrator signs in with by device code (default "
                "Microsoft Graph Command Line Tools, 14d82eec-204b-4c2f-b7e8-296a70dab67e)",
                metavar="C",
            ),
            Opt(
                "--blueprint-name",
                "the blueprint's display name (default 'agentid-helper blueprint')",
                metavar="N",
            ),
            Opt("--agent-name", "the agent identity's display name (1-256 chars)", metavar="N"),
            Opt(
                "--sponsor",
                "a sponsor's user object id or UPN; may be repeated (default: the signed-in "
                "administrator)",
                kind="append",
                metavar="ID_OR_UPN",
            ),
            Opt(
                "--credential",
                "the blueprint's credential: a secret in the keyring (default), a secret in a "
                "0600 file, a certificate made here, or this host's managed identity; the "
                "secret is never printed",
                choices=INIT_CREDENTIALS,
            ),
            Opt(
                "--credential-file",
                "secret-file, certificate: where to keep it (default: next to config.toml, "
                "PROFILE.secret or PROFILE.pem); never overwritten",
                metavar="PATH",
            ),
            Opt(
                "--managed-identity",
                "managed-identity: system, or a user-assigned identity's client id",
                metavar="ID",
            ),
            Opt(
                "--managed-identity-principal-id",
                "managed-identity: its principal (object) id, the federated credential's subject",
                metavar="OID",
            ),
            Opt("--agent-user-upn", "also create an agent user with this UPN", metavar="UPN"),
            Opt(
                "--save-profile",
                "the new profile's name (default: from the agent name); never overwrites",
                metavar="NEW",
            ),
            Opt(
                "--user-profile",
                "the agent user's AutonomousUser profile (default NEW-user)",
                metavar="NAME",
            ),
            Opt(
                "--authority-host",
                "the identity provider (default https://login.microsoftonline.com)",
                metavar="URL",
            ),
            Opt(
                "--graph-endpoint",
                "Microsoft Graph (default: the authority's cloud)",
                metavar="URL",
            ),
            Opt(
                "--ca-bundle", "extra trusted CAs (PEM) for the authority and Graph", metavar="PATH"
            ),
            Opt("--json", "print the result as JSON", kind="flag"),
            Opt(
                "--timeout",
                "the closing token request through the daemon may take S seconds (default "
                "$AGENTID_HELPER_TIMEOUT or 60); the questions and the sign-in wait for you",
                metavar="S",
            ),
        ],
        epilog="""examples:
  agentid-helper init                   # asks; an administrator signs in by device code
  agentid-helper get                    # the new agent's token (init made it the default)
  (umask 077; az account get-access-token --resource https://graph.microsoft.com > graph.json)
  agentid-helper init --non-interactive --graph-token-file graph.json \\
      --tenant-id contoso.onmicrosoft.com --agent-name build-bot --credential secret-file
  # needs Agent ID Administrator or Agent ID Developer; a failed init prints what it made
""",
    )
)

_add(
    Command(
        "agent",
        "create, list or delete agent identities of a profile's blueprint (Microsoft Graph)",
        [
            Opt(
                "--profile", "the profile whose blueprint (and credential) provisions", metavar="P"
            ),
            Opt("--name", "create: the new agent identity's display name (1-256 chars)"),
            Opt(
                "--sponsor",
                "create: a sponsor's user object id or UPN; may be repeated (at least one)",
                kind="append",
                metavar="ID_OR_UPN",
            ),
            Opt(
                "--save-profile",
                "create: add a profile NEW for the new agent to config.toml (inherits P's "
                "blueprint settings; comments kept; never overwrites)",
                metavar="NEW",
            ),
            Opt(
                "--agent-identity-app-id", "delete: the agent identity's app id (GUID)", metavar="A"
            ),
            Opt(
                "--delete-profile",
                "delete: also remove the profiles naming that agent identity",
                kind="flag",
            ),
            Opt("--json", "print the result as JSON", kind="flag"),
            _timeout(),
        ],
        positionals=(Pos("action", "create, list or delete", ("create", "list", "delete")),),
        epilog="""examples:
  agentid-helper agent create --profile graph-bot --name build-bot \\
      --sponsor alice@contoso.example --save-profile build-bot
  agentid-helper get --profile build-bot      # its token (waits out directory replication)
  agentid-helper agent list --profile graph-bot --json
  A=$(agentid-helper get --profile build-bot --format json | jq -r .agent_identity_app_id) && \\
      agentid-helper agent delete --profile graph-bot --agent-identity-app-id $A --delete-profile
  # the blueprint's own credential is used (AgentIdentity.CreateAsManager): no admin sign-in
""",
    )
)

_add(
    Command(
        "agent-user",
        "create or delete the agent user of a profile's agent identity (Microsoft Graph)",
        [
            Opt("--profile", "the profile whose agent identity is the user's parent", metavar="P"),
            Opt("--upn", "the agent user's UPN (alias@a-domain-of-the-tenant)", metavar="UPN"),
            Opt("--display-name", "create: the display name (default: the UPN)", metavar="N"),
            Opt(
                "--save-profile",
                "create: add an AutonomousUser profile NEW for the agent user to config.toml",
                metavar="NEW",
            ),
            Opt("--json", "print the result as JSON", kind="flag"),
            _timeout(),
        ],
        positionals=(Pos("action", "create or delete", ("create", "delete")),),
        epilog="""examples:
  agentid-helper agent create --profile graph-bot --name mailer \\
      --sponsor alice@contoso.example --save-profile mailer
  agentid-helper agent-user create --profile mailer --upn mailer@contoso.example \\
      --save-profile mailer-user
  agentid-helper get --profile mailer-user    # an AutonomousUser token of the agent user
  agentid-helper agent-user delete --profile mailer --upn mailer@contoso.example
""",
    )
)
