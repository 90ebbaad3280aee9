"""``doctor``'s security checks: file modes, the daemon's last reload, git's helper chain,
whether the managed identity endpoint can tell which user connects.

Warnings (``⚠``) point at something that works but exposes a secret or a
token; they do not fail ``doctor``. A failed config reload does: the daemon
is serving an older configuration than the file says.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from typing import TYPE_CHECKING, Protocol

from . import daemon_api, paths
from .failures import ClientError

if TYPE_CHECKING:  # the daemon's config is imported lazily, when doctor runs
    from agentid_daemon.config import Config

CREDENTIAL_FILE_KINDS = ("secret_file", "certificate_file", "federated_token_file")
# git >= 2.46 understands authtype/ephemeral credentials and does not hand
# ours to storing helpers; older gits pass the bearer token to every helper's
# `store` (e.g. `helper = store` writes it in clear to ~/.git-credentials).
GIT_SAFE_VERSION = (2, 46)


class Reporter(Protocol):
    def line(self, ok: bool, text: str, hint: str | None = None) -> bool: ...
    def warn(self, text: str, hint: str | None = None) -> None: ...


def check_file_modes(report: Reporter, config: Config) -> None:
    """Warn about a config, secret, certificate or token file readable by group or others."""
    files = [("config", paths.config_path())]
    for name in config.profile_names():
        spec = config.layered(config.profiles[name]).get("blueprint_credential")
        if spec is not None and spec.kind in CREDENTIAL_FILE_KINDS:
            location = os.path.expandvars(str(spec.location))
            files.append((f"profile {name}: {spec.kind.replace('_', ' ')}", location))
    seen: set[str] = set()
    for what, path in files:
        if path in seen or "$" in path:
            continue  # unset variable: the profile reports it when used
        seen.add(path)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue  # absent: other checks say so
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            report.warn(
                f"{what} {path} is readable by group or others (mode {mode:04o})",
                f"fix: chmod 600 {path}",
            )


def check_reload_error(report: Reporter) -> None:
    """A failed SIGHUP reload: the daemon keeps its previous configuration."""
    try:
        status = daemon_api.call_ok("GET", "/v1/status", autostart=False, timeout=10)
    except ClientError:
        return  # the daemon check already reported why
    error = (status.get("daemon") or {}).get("last_reload_error") if status else None
    report.line(
        not error,
        f"daemon configuration reload: {error or 'ok'}",
        "the daemon keeps its previous configuration; fix the file, then "
        "`systemctl --user reload agentid-helper` or `kill -HUP <daemon pid>`",
    )


def _git_version(text: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout


def git_helper_chains() -> dict[str, list[str]]:
    """``{url: [helper, ...]}``: what git would call for each configured URL (``*``: any).

    git collects ``credential.helper`` and the matching ``credential.<url>.helper``
    entries in config order, and an empty value clears what came before.
    (URL matching is simplified to equal keys: enough to spot a chain.)
    """
    out = _git("config", "--get-regexp", r"^credential\..*helper$") or ""
    entries: list[tuple[str, str]] = []
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        url = key[len("credential.") : -len(".helper")] if key.count(".") > 1 else "*"
        entries.append((url, value.strip()))
    chains: dict[str, list[str]] = {}
    for context in dict.fromkeys(url for url, _ in entries):
        helpers: list[str] = []
        for url, value in entries:
            if url in ("*", context):
                if value:
                    helpers.append(value)
                else:
                    helpers.clear()
        chains[context] = helpers
    return chains


def check_git_chain(report: Reporter) -> None:
    """Warn when old git would hand our token to another helper of the same list."""
    version = _git_version(_git("--version") or "")
    if version is None or version >= GIT_SAFE_VERSION:
        return
    for url, helpers in sorted(git_helper_chains().items()):
        ours = [h for h in helpers if "agentid-helper" in h]
        others = [h for h in helpers if "agentid-helper" not in h]
        if ours and others:
            report.warn(
                f"git {version[0]}.{version[1]} passes the token from agentid-helper to the "
                f"other helpers for {url} ({', '.join(others)}), which may store it in clear",
                "give agentid-helper its own URL-scoped list with an empty helper first "
                '(git config --global credential.https://HOST.helper "" then add ours), '
                "or use git >= 2.46",
            )


def check_endpoint_peers(report: Reporter) -> None:
    """The managed identity endpoint: can the daemon tell which user connects to it?"""
    from .statusview import endpoint_peers_text

    try:
        status = daemon_api.call_ok("GET", "/v1/status", autostart=False, timeout=10)
    except ClientError:
        return  # the daemon check already reported why
    endpoint = (status.get("daemon") or {}).get("managed_identity") if status else None
    if not isinstance(endpoint, dict) or not endpoint.get("endpoint"):
        return  # not open: nobody can connect
    peers = endpoint.get("peers")
    if not isinstance(peers, dict):
        return  # a daemon from before the check
    text = f"managed identity endpoint {endpoint['endpoint']}: {endpoint_peers_text(peers)}"
    if peers.get("peer_check") == "unavailable":
        report.warn(
            text,
            "the daemon needs netlink sock_diag (Linux inet_diag and tcp_diag; a sandbox "
            "must allow AF_NETLINK sockets) to refuse other users; until then only the "
            "session header protects the endpoint",
        )
    else:
        report.line(True, text)
