"""``agentid-helper``: the command-line client (entry point :func:`main`).

Modelled on keyring's CLI: :class:`CLI` parses argv and dispatches to a
``do_<command>`` method. The hot commands (get, kubectl-credential,
git-credential, exec) import only small stdlib modules; everything else is
imported lazily by the command that needs it.
"""

from __future__ import annotations

import os
import sys

from . import daemon_api
from .cliargs import HelpRequested, Parsed, parse
from .commands import COMMANDS
from .contract import (
    IDENTITY_ENDPOINT_VAR,
    IDENTITY_HEADER_VAR,
    MAX_MIN_VALIDITY_S,
    SHADOWING_MI_VARS,
    min_validity_ok,
)
from .failures import (
    EXIT_CONFIG,
    EXIT_IDP,
    EXIT_OK,
    EXIT_USAGE,
    ClientError,
    DaemonNotRunning,
    DaemonUnreachable,
    UsageError,
    cannot_run,
)
from .redact import quoted
from .selection import request_fields

#: The daemon's package, run by ``agentid-helper daemon`` as ``python -m``.
DAEMON_PACKAGE = "agentid_daemon"

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any, TextIO

    from .hotpath import Handoff

DEFAULT_ENV_VAR = "AGENTID_ACCESS_TOKEN"
# DefaultAzureCredential (azure-identity for Python and the other Azure SDKs)
# reads this to build its chain of one credential: a token the endpoint
# refuses (a wrong AZURE_CLIENT_ID, an outage) is then an error, never a
# fall-through to `az login` or another identity (azure-identity:
# _internal/utils.py process_credential_exclusions, _credentials/default.py).
# Set only when CMD gets the endpoint, and never over the caller's own value.
TOKEN_CREDENTIALS_VAR = "AZURE_TOKEN_CREDENTIALS"
TOKEN_CREDENTIALS_VALUE = "ManagedIdentityCredential"


def _valid_env_name(name: str) -> bool:
    return (
        bool(name)
        and not name[0].isdigit()
        and all(c == "_" or (c.isascii() and c.isalnum()) for c in name)
    )


class CLI:
    """Parses one command line and runs it; every ``do_*`` returns an exit code."""

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ):
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def run(self, argv: list[str]) -> int:
        if argv[:1] == ["--version"]:
            from . import __version__

            self.stdout.write(f"agentid-helper {__version__}\n")
            return EXIT_OK
        try:
            parsed = parse(argv, COMMANDS)
            handler = getattr(self, "do_" + parsed.command.replace("-", "_"))
            return int(handler(parsed) or EXIT_OK)
        except HelpRequested as req:
            from .helptext import print_help

            if not argv:  # bare `agentid-helper`: a usage error, help on stderr
                print_help(None, self.stderr)
                return EXIT_USAGE
            print_help(req.command, self.stdout)
            return EXIT_OK
        except ClientError as exc:
            return exc.report(self.stderr)
        except KeyboardInterrupt:
            return 130

    def _write(self, text: str) -> None:
        self.stdout.write(text if text.endswith("\n") else text + "\n")
        self.stdout.flush()

    # -- hot paths ---------------------------------------------------------

    def _token_fields(self, parsed: Parsed) -> dict[str, Any]:
        fields = request_fields(parsed.opts, parsed.command, self.stdin)
        if "min_validity" in parsed.opts:
            raw = str(parsed.opts["min_validity"])
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not min_validity_ok(value):
                raise UsageError(
                    f"{parsed.command}: --min-validity must be a number of seconds from 0 "
                    f"to {MAX_MIN_VALIDITY_S} (got {quoted(raw)})",
                    parsed.command,
                )
            fields["min_validity_s"] = int(value) if value.is_integer() else value
        if parsed.opts.get("force_refresh"):
            fields["force_refresh"] = True
        for dest in ("claims", "obo_session"):  # `get` only; the daemon validates them
            given = parsed.opts.get(dest)
            if given is not None:
                if not str(given).strip():
                    raise UsageError(
                        f"{parsed.command}: --{dest.replace('_', '-')} is empty", parsed.command
                    )
                fields[dest] = str(given).strip()
        return fields

    def _timeout(self, parsed: Parsed) -> float | None:
        """``--timeout S`` (None: daemon_api applies $AGENTID_HELPER_TIMEOUT or its default)."""
        raw = parsed.opts.get("timeout")
        if raw is None:
            return None
        return daemon_api.parse_timeout(str(raw), "--timeout", parsed.command)

    def do_get(self, parsed: Parsed) -> int:
        from .formats import format_token

        body = daemon_api.get_token(self._token_fields(parsed), timeout=self._timeout(parsed))
        self._write(format_token(body, str(parsed.opts.get("format", "token"))))
        return EXIT_OK

    def do_kubectl_credential(self, parsed: Parsed) -> int:
        from .formats import exec_api_version, exec_credential

        api_version = exec_api_version(os.environ.get("KUBERNETES_EXEC_INFO"))
        body = daemon_api.get_token(self._token_fields(parsed), timeout=self._timeout(parsed))
        self._write(exec_credential(body, api_version))
        return EXIT_OK

    def do_git_credential(self, parsed: Parsed) -> int:
        from . import gitcred

        if not parsed.positionals:
            raise UsageError(
                "git-credential: missing operation (get, store or erase)", "git-credential"
            )
        operation = parsed.positionals[0]
        attrs = gitcred.parse_request(self.stdin)
        if operation not in ("get", "erase"):
            return EXIT_OK  # store: the daemon owns the token; unknown operations: ignored
        explicit = parsed.opts.get("profile")
        profile = gitcred.selected_profile(attrs, str(explicit) if explicit else None)
        if profile is None or not gitcred.protocol_allowed(attrs):
            return EXIT_OK  # not ours: let the next helper answer
        timeout = self._timeout(parsed)
        if operation == "erase":
            daemon_api.call_ok("DELETE", "/v1/token", {"profile": profile}, timeout=timeout)
            return EXIT_OK
        body = daemon_api.get_token({"profile": profile}, timeout=timeout)
        self.stdout.write(gitcred.answer_get(attrs, profile, body))
        self.stdout.flush()
        return EXIT_OK

    def do_exec(self, parsed: Parsed) -> int:
        """Run CMD with the token (and, by default, a managed identity endpoint).

        Without the endpoint this process becomes CMD (execvpe). With it, CMD
        runs as a child beside which this process holds the endpoint's port
        and keeps the session served across daemon restarts (exec_session.py);
        either way CMD's exit status, or its death by a signal, is ours.
        """
        if not parsed.rest:
            raise UsageError(
                "exec: missing command (agentid-helper exec [selection] -- CMD ...)", "exec"
            )
        token_env = not parsed.opts.get("no_token_env")
        endpoint = not parsed.opts.get("no_identity_endpoint")
        if not (token_env or endpoint):
            raise UsageError(
                "exec: --no-token-env and --no-identity-endpoint together leave CMD no token",
                "exec",
            )
        if not token_env and parsed.opts.get("env_var"):
            raise UsageError(
                "exec: --env-var names the token's variable: not with --no-token-env", "exec"
            )
        name = str(parsed.opts.get("env_var") or DEFAULT_ENV_VAR)
        if not _valid_env_name(name):
            raise UsageError(
                f"exec: --env-var {quoted(name)} is not a valid environment variable name", "exec"
            )
        fields = self._token_fields(parsed)
        timeout = self._timeout(parsed)
        env = dict(os.environ)
        if token_env:
            # Without it CMD starts even while Entra is down: the endpoint
            # serves it once Entra answers again.
            try:
                body = daemon_api.get_token(fields, timeout=timeout)
            except ClientError as exc:
                if exc.exit_code == EXIT_IDP and endpoint:
                    exc.hints.append(
                        "a command that gets its tokens from the managed identity endpoint "
                        "can start now with --no-token-env"
                    )
                raise
            env[name] = str(body["access_token"])
        if endpoint:
            from . import exec_session

            # This process binds the endpoint's port and keeps it (and CMD a copy)
            # while CMD lives; the daemon serves it through a duplicate.
            session = exec_session.EndpointSession(fields, exec_session.open_endpoint_listener())
            session.register(timeout=timeout)
            for var in SHADOWING_MI_VARS:
                env.pop(var, None)
            env[IDENTITY_ENDPOINT_VAR] = str(session.endpoint)
            env[IDENTITY_HEADER_VAR] = str(session.header)
            env.setdefault(TOKEN_CREDENTIALS_VAR, TOKEN_CREDENTIALS_VALUE)
            self.stdout.flush()
            self.stderr.flush()
            return exec_session.run(list(parsed.rest), env, session, self.stderr)
        self.stdout.flush()
        self.stderr.flush()
        import signal

        # Python ignores SIGPIPE (and SIGXFSZ); ignored dispositions survive exec.
        for sig in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, sig):
                signal.signal(getattr(signal, sig), signal.SIG_DFL)
        try:
            os.execvpe(parsed.rest[0], parsed.rest, env)
        except OSError as exc:
            raise cannot_run(parsed.rest[0], exc) from None
        return 126  # not reached

    # -- management commands (cold paths) ------------------------------------

    def do_status(self, parsed: Parsed) -> int:
        from .statusview import render_status

        try:
            body = daemon_api.call_ok("GET", "/v1/status", autostart=False, timeout=10)
        except DaemonNotRunning:
            from . import paths

            # status starts no daemon. Its hint is not "start it with `agentid-helper
            # daemon`": with a config the daemon refuses, that fails as autostart does.
            raise DaemonUnreachable(
                f"no daemon running at {paths.socket_path()}", [daemon_api.next_start_hint()]
            ) from None
        if parsed.opts.get("json"):
            import json

            self._write(json.dumps(body, indent=2, sort_keys=True))
        else:
            self._write(render_status(body))
        return EXIT_OK

    def do_flush(self, parsed: Parsed) -> int:
        """POST /v1/flush; prints what was dropped (stdout, like status)."""
        from .statusview import flush_summary

        fields = request_fields(parsed.opts, "flush", self.stdin)
        if parsed.opts.get("obo_session") is not None:
            fields["obo_session"] = str(parsed.opts["obo_session"]).strip()
        if parsed.opts.get("all"):
            if fields:
                raise UsageError("flush: give either a selection or --all, not both", "flush")
            payload: dict[str, Any] = {"all": True}
        else:
            # No selection: the default profile ({"all": false}), never everything.
            payload = fields or {"all": False}
        try:
            body = daemon_api.call_ok("POST", "/v1/flush", payload, autostart=False, timeout=10)
        except DaemonNotRunning:
            # Only nothing listening is "nothing cached": a daemon that does not
            # answer (hung, stopped) or an untrusted socket is reported (exit 3).
            body = None
        if parsed.opts.get("json"):
            import json

            shown = body if isinstance(body, dict) else {"daemon_running": False, "tokens": 0}
            self._write(json.dumps(shown, indent=2, sort_keys=True))
        else:
            self._write(flush_summary(body))
        return EXIT_OK

    def do_reload(self, parsed: Parsed) -> int:
        """POST /v1/reload; exit 0 loaded or unchanged, 5 when the file does not load."""
        try:
            body = daemon_api.call_ok("POST", "/v1/reload", None, autostart=False, timeout=30)
        except DaemonNotRunning:
            # Only "no daemon" is nothing to do; an untrusted socket or a hung daemon is not.
            self.stderr.write(
                "agentid-helper: daemon not running: nothing to reload "
                "(the next request starts it with the file as it is)\n"
            )
            return EXIT_OK
        info = body if isinstance(body, dict) else {}
        path = info.get("config_path") or "the config file"
        result = info.get("result")
        if result == "error":
            raise ClientError(
                f"reload: {info.get('error') or 'the file does not load'}",
                EXIT_CONFIG,
                ["the daemon keeps serving its previous configuration"],
            )
        if result == "unchanged":
            self._write(f"configuration unchanged ({path})")
            return EXIT_OK
        changes = info.get("profiles") if isinstance(info.get("profiles"), dict) else {}
        said = [
            f"{what} {', '.join(str(n) for n in names)}"
            for what, names in (changes or {}).items()
            if isinstance(names, list) and names
        ]
        self._write(
            f"configuration reloaded from {path}"
            + (f" (profiles {'; '.join(said)})" if said else "")
        )
        return EXIT_OK

    def do_logs(self, parsed: Parsed) -> int:
        from . import paths
        from .daemonlog import DEFAULT_LINES, run_logs

        raw = str(parsed.opts.get("lines", DEFAULT_LINES))
        if not raw.isdigit() or int(raw) > 10**7:
            raise UsageError(f"logs: --lines must be a number of lines (got {quoted(raw)})", "logs")
        return run_logs(
            paths.socket_path(),
            self.stdout,
            self.stderr,
            lines=int(raw),
            follow=bool(parsed.opts.get("follow")),
        )

    def do_stop(self, parsed: Parsed) -> int:
        from . import paths
        from .stopcmd import run_stop

        return run_stop(paths.socket_path(), self.stdout)

    def do_secret(self, parsed: Parsed) -> int:
        from .secretcmd import run_secret

        return run_secret(
            str(parsed.positionals[0]) if parsed.positionals else "",
            parsed.opts.get("blueprint_app_id"),
            self.stdin,
            self.stdout,
            self.stderr,
        )

    def do_init(self, parsed: Parsed) -> int:
        from .initcmd import run_init

        return run_init(parsed, self.stdout, self.stderr, self._timeout(parsed))

    def do_agent(self, parsed: Parsed) -> int:
        from .agentcmd import run_agent

        return run_agent(parsed, self.stdout, self._timeout(parsed))

    def do_agent_user(self, parsed: Parsed) -> int:
        from .agentcmd import run_agent_user

        return run_agent_user(parsed, self.stdout, self._timeout(parsed))

    def do_daemon(self, parsed: Parsed) -> int:
        """Become the daemon: exec ``python -m agentid_daemon`` with the arguments
        passed through (the client never imports the daemon, not even here)."""
        import importlib.util

        if importlib.util.find_spec(DAEMON_PACKAGE) is None:
            raise ClientError(f"the daemon is not installed here ({DAEMON_PACKAGE})", 5)
        for stream in (self.stdout, self.stderr, sys.stdout, sys.stderr):
            stream.flush()
        argv = [sys.executable, "-m", DAEMON_PACKAGE, *parsed.rest]
        os.execv(sys.executable, argv)

    def do_doctor(self, parsed: Parsed) -> int:
        from .doctor import run_doctor

        return run_doctor(self.stdout)

    def do_kubeconfig_user(self, parsed: Parsed) -> int:
        from .kubeconfig import default_kubeconfig, helper_command, merge_user, users_entry

        profile = parsed.opts.get("profile")
        if not profile:
            raise UsageError("kubeconfig-user: --profile is required", "kubeconfig-user")
        name = str(parsed.opts.get("name") or f"agentid-helper-{profile}")
        merge = parsed.opts.get("merge")
        if merge is None:
            self._write(users_entry(name, str(profile), helper_command()))
            return EXIT_OK
        if merge == "":
            raise UsageError("kubeconfig-user: --merge= needs a file name", "kubeconfig-user")
        path = default_kubeconfig() if merge is True else os.path.expanduser(str(merge))
        backup = merge_user(path, name, str(profile), helper_command())
        self._write(
            f"wrote user {name} to {path}"
            + (f" (the previous file is {backup})" if backup else " (a new file)")
        )
        self._write(f"use it: kubectl config set-context --current --user {name}")
        return EXIT_OK

    def do_completion(self, parsed: Parsed) -> int:
        if not parsed.positionals:
            raise UsageError("completion: missing shell (bash or zsh)", "completion")
        from .completion import run_completion

        return run_completion(parsed.positionals[0], self.stdout)

    def do_systemd(self, parsed: Parsed) -> int:
        if not parsed.positionals:
            raise UsageError("systemd: missing action (install or uninstall)", "systemd")
        from . import systemd_units

        if parsed.positionals[0] == "install":
            return int(systemd_units.install(bool(parsed.opts.get("now"))))
        if parsed.opts.get("now"):
            raise UsageError("systemd: --now only applies to install", "systemd")
        return int(systemd_units.uninstall())


def main(argv: list[str] | None = None, handoff: Handoff | None = None) -> int:
    """Console-script entry point.

    ``handoff``: what agentid_client.hotpath did before it gave up on this
    command line (git's stdin as it read it, a connection it opened); this
    run continues from there instead of repeating it.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    stdin = None
    if handoff is not None:
        if handoff.connection is not None:
            daemon_api.adopt(handoff.connection)
        if handoff.stdin_text is not None:
            import io

            stdin = io.StringIO(handoff.stdin_text)
    try:
        return CLI(stdin=stdin).run(args)
    except BrokenPipeError:
        from .hotpath import quiet_broken_pipe

        return quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
