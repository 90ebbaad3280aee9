"""``agentid-helper doctor``: check the whole chain and say what to fix.

Checks, in order: the config parses (with the daemon's own loader, run in a
child interpreter: config_view), the
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

import os
from typing import TextIO

from . import daemon_api, doctor_security, paths, private_dir, trust
from .config_view import ConfigRefused, ConfigView, load_config_view
from .failures import EXIT_CONFIG, EXIT_UNREACHABLE, ClientError

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


def _check_config(report: Report) -> ConfigView | None:
    path = paths.config_path()
    try:
        config = load_config_view(path)
    except ClientError as exc:
        report.line(False, f"config: {exc.message}")
        return None
    except ConfigRefused as exc:
        report.line(False, f"config {path}: {exc.description}", exc.hint)
        return None
    if os.path.exists(path):
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


def _uses_keyring(config: ConfigView) -> bool:
    return any(profile["uses_keyring"] for profile in config["profiles"])


def _check_profiles(report: Report, config: ConfigView) -> None:
    from .statusview import scope_text

    if not config["profiles"]:
        report.out.write("- no profiles configured: nothing to test\n")
    for profile in config["profiles"]:
        name = profile["name"]
        if profile["mode"] == "OBO":
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
        report.line(
            True,
            f"profile {name}: token acquired ({body.get('mode', '?')}, "
            f"scope {scope_text(profile['scope'], body.get('scope')) or '?'})",
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
        doctor_security.check_trusted_files(report, config["trusted_files"])
    doctor_security.check_git_chain(report)
    _check_keyring(report, needed=config is not None and _uses_keyring(config))
    if daemon_ok and config is not None:
        _check_profiles(report, config)
    out.write("all checks passed\n" if not report.failed else f"{report.failed} check(s) failed\n")
    out.flush()
    return report.exit_code
