"""``agentid-helper doctor``: check the whole chain and say what to fix.

Checks, in order: the config parses (with the daemon's own loader, run as
``python -m agentid_daemon.config.verdict``: the client never imports the daemon), the
socket directory is private (the client's own rule), the daemon answers
/healthz and /readyz and its last config reload succeeded, a keyring backend
is usable (needed only by profiles using the keyring), and every profile gets
a token (an identity-provider refusal shows its AADSTS code and hint). Prints
one ✔/✘ line per check; exit 0 only when all pass, else the exit code of the
first failed check's kind (5 config or keyring, 3 daemon, 4 identity
provider), like the commands it stands in for. doctor_security adds a ✘ for
each file the daemon would refuse (config, ca_bundle, credential or header
file that another user could change, a secret others can read: file_trust)
and a ⚠ for an old git that would hand our token to a storing helper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, TextIO

from . import daemon_api, doctor_security, paths, private_dir, trust
from .failures import EXIT_CONFIG, EXIT_UNREACHABLE, ClientError

#: The daemon-side module that judges the config file (one JSON verdict on stdout).
VERDICT_MODULE = "agentid_daemon.config.verdict"
VERDICT_TIMEOUT_S = 30.0

OK, FAIL, WARN = "✔", "✘", "⚠"


class Report:
    def __init__(self, out: TextIO):
        self.out = out
        self.failed = 0
        self.exit_code = 0  # the first failed check's

    def line(
        self, ok: bool, text: str, hint: str | None = None, *, code: int = EXIT_CONFIG
    ) -> bool:
        self.out.write(f"{OK if ok else FAIL} {text}\n")
        if hint and not ok:
            self.out.write(f"    {hint}\n")
        if not ok:
            self.failed += 1
            self.exit_code = self.exit_code or code
        return ok

    def warn(self, text: str, hint: str | None = None) -> None:
        """Something works but exposes a secret or a token: said, not counted as failed."""
        self.out.write(f"{WARN} {text}\n")
        if hint:
            self.out.write(f"    {hint}\n")


def config_verdict(path: str) -> dict[str, Any] | str:
    """The daemon's verdict on the config at ``path``, or why it could not be had."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", VERDICT_MODULE, path],
            capture_output=True,
            text=True,
            timeout=VERDICT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return type(exc).__name__
    try:
        body = json.loads(proc.stdout)
    except ValueError:
        body = None
    if proc.returncode != 0 or not isinstance(body, dict):
        lines = proc.stderr.strip().splitlines()
        return (
            "agentid_daemon"
            if "ModuleNotFoundError" in proc.stderr
            else (lines[-1] if lines else f"exit {proc.returncode}")
        )
    return body


def _check_config(report: Report) -> dict[str, Any] | None:
    path = paths.config_path()
    config = config_verdict(path)
    if isinstance(config, str):
        report.line(False, f"config: cannot load the daemon's config module ({config})")
        return None
    if not config.get("ok"):
        # The loader's text names the file already ("PATH: [profiles] ..."): once is enough.
        why = str(config.get("description", "")).removeprefix(f"{path}: ")
        report.line(False, f"config {path}: {why}", config.get("hint"))
        return None
    if config.get("exists"):
        report.line(True, f"config {path}: {len(config['profiles'])} profile(s)")
        return config
    served = served_profiles()
    if served:
        # As the reload check says (✘): the daemon keeps what it read before.
        report.line(
            False,
            f"config {path}: absent, but the daemon serves {len(served)} profile(s) "
            f"from before ({', '.join(served)})",
            "restore the file, or run `agentid-helper reload` to serve the empty config",
        )
        return None
    report.line(True, f"config {path}: absent (empty config)")
    return config


def served_profiles() -> list[str]:
    """The profiles a running daemon serves (its status); [] without one."""
    try:
        body = daemon_api.call_ok("GET", "/v1/status", autostart=False, timeout=10)
    except ClientError:
        return []
    daemon = body.get("daemon") if isinstance(body, dict) else None
    profiles = daemon.get("profiles") if isinstance(daemon, dict) else None
    return [str(p) for p in profiles] if isinstance(profiles, list) else []


def _check_socket_dir(report: Report, sock: str) -> None:
    """The client's own rule (private_dir): what passes here is what get/exec accept."""
    directory = os.path.dirname(os.path.abspath(sock))
    if not os.path.lexists(directory):
        reason = private_dir.parents_problem(directory)
        report.line(
            reason is None,
            f"socket directory {directory}: "
            + (reason or "absent (created when the daemon starts)"),
            trust.WHAT_TO_DO,
        )
        return
    reason = private_dir.dir_problem(directory)
    report.line(
        reason is None,
        f"socket directory {directory}: {reason or 'private'}",
        f"fix: chmod 0700 {directory} if it is yours; else {trust.WHAT_TO_DO}",
    )


def _check_daemon(report: Report, sock: str) -> bool:
    try:
        health = daemon_api.call("GET", "/healthz", timeout=10)
        ready = daemon_api.call("GET", "/readyz", timeout=10, autostart=False)
    except ClientError as exc:
        report.line(
            False,
            f"daemon at {sock}: {exc.message}",
            "; ".join(exc.hints) or None,
            code=exc.exit_code,
        )
        return False
    report.line(
        health.status == 200,
        f"daemon at {sock}: alive (/healthz {health.status})",
        code=EXIT_UNREACHABLE,
    )
    detail = ready.json() if ready.status != 200 else None
    return report.line(
        ready.status == 200,
        f"daemon ready (/readyz {ready.status})",
        f"readiness: {detail}" if detail else None,
        code=EXIT_UNREACHABLE,
    )


def _report_run_mode(report: Report) -> None:
    """Say who runs the daemon (systemd, autostart, foreground) and, with units, their state."""
    from . import supervisor
    from .statusview import RUN_MODES

    try:
        body = daemon_api.call_ok("GET", "/v1/status", autostart=False, timeout=10)
        info = body.get("daemon") if isinstance(body, dict) else None
    except ClientError:
        info = None
    if isinstance(info, dict) and info.get("run_mode"):
        from .daemonlog import describe

        mode = str(info["run_mode"])
        report.out.write(f"- daemon pid {info.get('pid', '?')}: {RUN_MODES.get(mode, mode)}\n")
        socket = str(info.get("socket") or paths.socket_path())
        report.out.write(f"- daemon log: {describe(mode, socket)}\n")
    if supervisor.units_installed():
        states = {
            unit: supervisor.unit_state(unit)
            for unit in (supervisor.SOCKET_UNIT, supervisor.SERVICE_UNIT)
        }
        report.out.write(
            "- systemd units installed: "
            + ", ".join(f"{unit} {state}" for unit, state in states.items())
            + "\n"
        )
        if "failed" in states.values():
            report.line(False, "a systemd unit failed", supervisor.STATUS_HINT)


def _check_keyring(report: Report, needed: bool) -> None:
    from .secretcmd import NO_BACKEND_HINTS, usable_backend

    _, problem = usable_backend()
    if problem is None:
        report.line(True, "keyring backend usable")
    elif needed:
        report.line(False, f"keyring: {problem}", " ".join(NO_BACKEND_HINTS))
    else:
        report.out.write(f"- keyring: {problem} (no profile uses the keyring)\n")


def _check_profiles(report: Report, config: dict[str, Any]) -> None:
    from .statusview import scope_text

    profiles = config["profiles"]
    if not profiles:
        report.out.write("- no profiles configured: nothing to test\n")
    for profile in profiles:
        name = profile["name"]
        if profile["obo"]:
            report.out.write(
                f"- profile {name}: OBO needs a user token; test it with "
                f"`agentid-helper get --profile {name} --user-token-file -`\n"
            )
            continue
        try:
            body = daemon_api.get_token({"profile": name, "force_refresh": True})
        except ClientError as exc:
            report.line(
                False,
                f"profile {name}: {exc.message}",
                "; ".join(exc.hints) or None,
                code=exc.exit_code,
            )
            continue
        # The requested scope (the cache key `flush --scope` selects), and the
        # granted one when it differs, as `status` shows them.
        requested = profile["scope"]
        report.line(
            True,
            f"profile {name}: token acquired ({body.get('mode', '?')}, "
            f"scope {scope_text(list(requested), body.get('scope')) or '?'})",
        )


def run_doctor(out: TextIO) -> int:
    report = Report(out)
    config = _check_config(report)
    sock = paths.socket_path()
    _check_socket_dir(report, sock)
    daemon_ok = _check_daemon(report, sock)
    _report_run_mode(report)
    if daemon_ok:
        doctor_security.check_reload_error(report)
        doctor_security.check_endpoint_peers(report)
    if config is not None:
        doctor_security.check_trusted_files(report, config)
    doctor_security.check_git_chain(report)
    _check_keyring(report, needed=config is not None and bool(config["uses_keyring"]))
    if daemon_ok and config is not None:
        _check_profiles(report, config)
    out.write("all checks passed\n" if not report.failed else f"{report.failed} check(s) failed\n")
    out.flush()
    return report.exit_code
