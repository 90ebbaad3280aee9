"""``agentid-helper status``: the daemon's ``GET /v1/status`` as a readable table.

The daemon never puts token values in status; this view only shows
identifiers, times and the last error.
"""

from __future__ import annotations

import time
from typing import Any

from .formats import humanize_seconds

#: The daemon's run_mode (agentid_daemon.runmode) in words.
RUN_MODES = {
    "systemd": "run by systemd unit agentid-helper.service",
    "autostart": "autostarted by the client",
    "foreground": "started in the foreground (agentid-helperd or agentid-helper daemon)",
}

COLUMNS = ("PROFILE", "MODE", "AGENT", "SCOPE", "USER", "EXPIRES IN", "NEXT REFRESH", "LAST ERROR")
SESSION_COLUMNS = ("OBO SESSION", "AGENT", "USER", "AGE", "LAST REFRESH", "ENDS IN", "LAST ERROR")
MAX_CELL = 48


def _cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = " ".join(str(value).split())  # one line per entry whatever the error text holds
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ago(epoch: Any, now: float) -> str | None:
    if not _is_time(epoch):
        return None
    return humanize_seconds(max(0.0, now - float(epoch))) + " ago"


def _until(epoch: Any, now: float) -> str:
    if not _is_time(epoch):
        return "-"
    return humanize_seconds(epoch - now)


def _error_text(err: Any) -> Any:
    if isinstance(err, dict):
        codes = err.get("aadsts_codes") or []
        text = err.get("error_description") or err.get("error") or ""
        return " ".join([*(f"AADSTS{c}" for c in codes if f"AADSTS{c}" not in text), str(text)])
    return err


def rows(body: Any, now: float) -> list[tuple[str, ...]]:
    entries = body.get("entries", []) if isinstance(body, dict) else body
    out = []
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        kind = entry.get("kind") or "resource"
        mode = entry.get("mode") if kind == "resource" else f"({kind})"
        scope = entry.get("scopes", entry.get("scope"))
        out.append(
            tuple(
                _cell(v)
                for v in (
                    entry.get("profile"),
                    mode,
                    # A managed identity's own token (a blueprint credential) names it.
                    entry.get("agent_identity_app_id") or entry.get("managed_identity"),
                    scope,
                    entry.get("user"),
                    _until(entry.get("expires_on"), now),
                    _until(entry.get("refresh_on"), now),
                    _error_text(entry.get("last_error")),
                )
            )
        )
    return out


def session_rows(body: Any, now: float) -> list[tuple[str, ...]]:
    sessions = body.get("obo_sessions", []) if isinstance(body, dict) else []
    out = []
    for s in sessions or []:
        if not isinstance(s, dict):
            continue
        last = s.get("last_refresh")
        out.append(
            tuple(
                _cell(v)
                for v in (
                    s.get("name"),
                    s.get("agent_identity_app_id"),
                    s.get("user"),
                    humanize_seconds(float(s.get("age_s") or 0)),
                    _ago(last, now),
                    _until(s.get("ends_on"), now),
                    s.get("last_error"),
                )
            )
        )
    return out


def _table(columns: tuple[str, ...], table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (columns, *table)
    ]


def render_status(body: Any, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines: list[str] = []
    daemon = body.get("daemon") if isinstance(body, dict) else None
    if isinstance(daemon, dict):
        uptime = humanize_seconds(float(daemon.get("uptime_s") or 0))
        mode = daemon.get("run_mode")
        lines.append(
            f"daemon: pid {daemon.get('pid', '?')}, up {uptime}"
            + (f", {RUN_MODES.get(str(mode), str(mode))}" if mode else "")
            + f", socket {daemon.get('socket') or '?'}, config {daemon.get('config_path') or '?'}"
        )
        if daemon.get("last_reload_error"):
            lines.append(
                f"config reload failed (previous config in force): {daemon['last_reload_error']}"
            )
        endpoint = daemon.get("managed_identity")
        if isinstance(endpoint, dict) and (endpoint.get("endpoint") or endpoint.get("sessions")):
            # Without a sidecar's fixed endpoint, each exec session has a port of its own.
            where = endpoint.get("endpoint") or "a port per exec"
            lines.append(
                f"managed identity endpoint: {where}, {endpoint.get('sessions', 0)} session(s)"
            )
    table = rows(body, now)
    lines.extend(_table(COLUMNS, table) if table else ["no cached tokens"])
    sessions = session_rows(body, now)
    if sessions:
        lines.append("")
        lines.extend(_table(SESSION_COLUMNS, sessions))
    return "\n".join(lines)
