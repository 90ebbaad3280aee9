"""``doctor``'s security checks: file modes, the daemon's last reload, git's helper chain,
whether the managed identity endpoint can tell which user connects.

A file the daemon would refuse (:mod:`.file_trust`: the config, a
``ca_bundle``, a credential or header file that another user could change,
or a secret others can read) fails ``doctor`` with the command that fixes
it, as does a failed config reload (the daemon is serving an older
configuration than the file says). Warnings (``⚠``) point at something
that works but may expose a token; they do not fail ``doctor``.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Protocol

from . import daemon_api, file_trust, paths
from .failures import ClientError

# git >= 2.46 understands authtype/ephemeral credentials and does not hand
# ours to storing helpers; older gits pass the bearer token to every helper's
# `store` (e.g. `helper = store` writes it in clear to ~/.git-credentials).
GIT_SAFE_VERSION = (2, 46)


class Reporter(Protocol):
    def line(self, ok: bool, text: str, hint: str | None = None) -> bool: ...
    def warn(self, text: str, hint: str | None = None) -> None: ...


def trusted_files(config: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(what, path, secret)`` for each file the daemon trusts, given doctor's verdict
    on the config (agentid_daemon.config.verdict lists the files besides the config)."""
    files = [("config", paths.config_path(), False)]
    files += [(str(w), str(p), bool(s)) for w, p, s in config.get("trusted_files", [])]
    return files


def check_trusted_files(report: Reporter, config: dict[str, Any]) -> None:
    """A ✘ for each file the daemon would refuse (file_trust): others could change it.

    Absent files are left to the checks that use them (a header file is
    created at start, a credential file fails its profile's token check).
    """
    seen: set[str] = set()
    checked = refused = 0
    for what, path, secret in trusted_files(config):
        if path in seen or "$" in path:
            continue  # unset variable: the profile reports it when used
        seen.add(path)
        try:
            file_trust.check_file(path, secret=secret)
        except file_trust.UntrustedFile as exc:
            if not exc.missing:
                where = "" if exc.path == path else f": {exc.path}"
                report.line(False, f"{what} {path}{where} {exc.reason}", exc.fix)
                refused += 1
            continue
        checked += 1
    if checked and not refused:
        report.line(True, f"{checked} file(s) the daemon trusts: none changeable by other users")


def check_reload_error(report: Reporter) -> None:
    """The daemon serves the config file as it is on disk: no failed reload, and
    the file it read (``config_file`` in status) is the one there now.

    Asking for the status makes the daemon look at its file first, so a file
    changed since is reloaded (or its error reported) before we compare.
    """
    try:
        status = daemon_api.call_ok("GET", "/v1/status", autostart=False, timeout=10)
    except ClientError:
        return  # the daemon check already reported why
    daemon = (status.get("daemon") or {}) if isinstance(status, dict) else {}
    error = daemon.get("last_reload_error")
    if error:
        report.line(
            False,
            f"daemon configuration reload: {error}",
            "the daemon keeps serving its previous configuration; fix the file (it is "
            "reloaded when it changes) or run `agentid-helper reload` to see the result",
        )
        return
    path = daemon.get("config_path")
    if "config_file" in daemon and isinstance(path, str):
        served, on_disk = daemon["config_file"], _signature(path)
        if served != on_disk:
            report.line(
                False,
                f"daemon configuration: it serves an older version of {path} than the one on disk"
                if on_disk is not None
                else f"daemon configuration: it serves {path}, which is no longer there",
                "run `agentid-helper reload` (it prints what the daemon made of the file)",
            )
            return
    report.line(True, "daemon configuration reload: ok (the daemon serves the file on disk)")


def _signature(path: str) -> dict[str, int] | None:
    """The file as the daemon's status reports it (agentid_daemon.config.watch)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"device": st.st_dev, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "size": st.st_size}


def parse_git_version(text: str) -> tuple[int, int] | None:
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
    version = parse_git_version(_git("--version") or "")
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
