"""``agentid-helper status``: the daemon's ``GET /v1/status`` as a readable table.

The daemon never puts token values in status; this view only shows
identifiers, times and the last error. One row per live key (the daemon
leaves out keys that never got a token: their errors are the status'
``recent_errors``), grouped by profile, the exchange tokens after the
resource tokens they serve. Rows that would read the same differ in a key
part the table does not show (tenant, authority, blueprint, credential,
client capabilities): that part is added to their AGENT cell.

Also renders ``flush``'s answer (:func:`flush_summary`).
"""

from __future__ import annotations

import time
from typing import Any

from .formats import humanize_seconds

#: The daemon's run_mode (agentid_daemon.process.runmode) in words.
RUN_MODES = {
    "systemd": "run by systemd unit agentid-helper.service",
    "autostart": "autostarted by the client",
    "foreground": "started in the foreground (agentid-helperd or agentid-helper daemon)",
}

COLUMNS = (
    "PROFILE",
    "MODE",
    "AGENT",
    "SCOPE",
    "USER",
    "STATE",
    "EXPIRES IN",
    "NEXT REFRESH",
    "LAST ERROR",
)
#: Key parts a row does not show, named when two rows would otherwise read the same.
HIDDEN_KEY_PARTS = (
    ("tenant_id", "tenant"),
    ("authority_host", "authority"),
    ("blueprint_app_id", "blueprint"),
    ("credential", "credential"),
    ("client_capabilities", "capabilities"),
)
_KIND_ORDER = {"resource": 0, "t1": 1, "t2": 2, "managed_identity": 3}
SESSION_COLUMNS = ("OBO SESSION", "AGENT", "USER", "AGE", "LAST REFRESH", "ENDS IN", "LAST ERROR")
MAX_CELL = 48


def _cell(value: Any, limit: int | None = MAX_CELL) -> str:
    """One table cell. Clipped at a word boundary, never inside an id; the
    last column (the last error) is not clipped (``limit=None``): it pads
    nothing, and its ids and AADSTS text are what the reader needs whole."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = " ".join(str(value).split())  # one line per entry whatever the error text holds
    if limit is None or len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return (text[:cut] if cut > 0 else text[: limit - 1]) + "…"


#: The SCOPE cell is not clipped either: the requested scope is what
#: ``flush --scope`` takes, whole.
_SCOPE_INDEX = COLUMNS.index("SCOPE")


def _cells(values: tuple[Any, ...], whole: int | None = None) -> tuple[str, ...]:
    """A row's cells; the last one (LAST ERROR) and column ``whole`` unclipped."""
    last = len(values) - 1
    return tuple(_cell(v, None if i in (whole, last) else MAX_CELL) for i, v in enumerate(values))


def _scope_words(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return " ".join(str(value or "").split())


def scope_text(requested: Any, granted: Any) -> str:
    """A key's scope as ``--scope`` selects it (the requested, normalised scopes:
    the cache key) and, when the token was granted something else (what
    ``get --format json`` reports as ``scope``), that too:
    ``https://graph.microsoft.com/.default (granted: User.Read)``."""
    asked, got = _scope_words(requested), _scope_words(granted)
    if not asked:
        return got
    if got and sorted(got.lower().split()) != sorted(asked.lower().split()):
        return f"{asked} (granted: {got})"
    return asked


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


def _next_refresh(epoch: Any, now: float) -> str:
    """A planned refresh: in how long, or "now" once due (it never "expires")."""
    if not _is_time(epoch):
        return "-"
    return humanize_seconds(epoch - now) if epoch - now >= 1 else "now"


def _error_text(err: Any) -> Any:
    if isinstance(err, dict):
        codes = err.get("aadsts_codes") or []
        text = err.get("error_description") or err.get("error") or ""
        return " ".join([*(f"AADSTS{c}" for c in codes if f"AADSTS{c}" not in text), str(text)])
    return err


def _profiles(entry: dict[str, Any]) -> list[str]:
    profiles = entry.get("profiles")
    if isinstance(profiles, list) and profiles:
        return [str(p) for p in profiles]
    return [str(entry["profile"])] if entry.get("profile") else []


def _sort_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    kind = str(entry.get("kind") or "resource")
    profiles = _profiles(entry)
    return (
        not profiles,  # rows of no profile last
        profiles,
        _KIND_ORDER.get(kind, 9),
        str(entry.get("mode") or ""),
        str(entry.get("scopes") or ""),
        str(entry.get("user") or ""),
    )


def rows(body: Any, now: float) -> list[tuple[str, ...]]:
    entries = body.get("entries", []) if isinstance(body, dict) else body
    entries = sorted((e for e in entries or [] if isinstance(e, dict)), key=_sort_key)
    cells = []
    for entry in entries:
        kind = entry.get("kind") or "resource"
        mode = entry.get("mode") if kind == "resource" else f"({kind})"
        scope = scope_text(entry.get("scopes", entry.get("scope")), entry.get("granted_scope"))
        cells.append(
            [
                ", ".join(_profiles(entry)) or None,
                mode,
                # A managed identity's own token (a blueprint credential) names it.
                entry.get("agent_identity_app_id") or entry.get("managed_identity"),
                scope,
                entry.get("user"),
                entry.get("state"),
                _until(entry.get("expires_on"), now),
                _next_refresh(entry.get("refresh_on"), now),
                _error_text(entry.get("last_error")),
            ]
        )
    _tell_apart(entries, cells)
    return [_cells(tuple(row), _SCOPE_INDEX) for row in cells]


def _tell_apart(entries: list[dict[str, Any]], cells: list[list[Any]]) -> None:
    """Rows whose shown identity is equal: name the hidden key parts that differ."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(cells):
        groups.setdefault(tuple(str(v) for v in row[:5]), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        for field, label in HIDDEN_KEY_PARTS:
            values = {str(entries[i].get(field)) for i in members}
            if len(values) > 1:
                for i in members:
                    cells[i][2] = f"{cells[i][2]} {label}={_cell(entries[i].get(field))}"


def recent_error_lines(body: Any, now: float, limit: int = 3) -> list[str]:
    """The newest recent errors (failures that left no row), one line each."""
    errors = body.get("recent_errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return []
    lines = [f"recent errors ({len(errors)}; all of them: agentid-helper status --json):"]
    for err in errors[:limit]:
        if not isinstance(err, dict):
            continue
        where = " ".join(
            str(part)
            for part in (
                err.get("profile") and f"profile {err['profile']}",
                err.get("kind") if err.get("kind") != "resource" else None,
                err.get("tenant_id") and f"tenant {err['tenant_id']}",
            )
            if part
        )
        count = int(err.get("count") or 1)
        when = _ago(err.get("at"), now) or "?"
        lines.append(
            f"  {when}{f' (x{count})' if count > 1 else ''} {where}: "
            + " ".join(str(_error_text(err)).split())[:200]
        )
    return lines


def session_rows(body: Any, now: float) -> list[tuple[str, ...]]:
    sessions = body.get("obo_sessions", []) if isinstance(body, dict) else []
    out = []
    for s in sessions or []:
        if not isinstance(s, dict):
            continue
        last = s.get("last_refresh")
        out.append(
            _cells(
                (
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


def endpoint_peers_text(peers: dict[str, Any]) -> str:
    """Who may connect to the managed identity endpoint (its ``peers`` in /v1/status)."""
    uids = ", ".join(str(uid) for uid in peers.get("allowed_uids") or [])
    refused = f"{peers.get('refused_connections', 0)} refused"
    if peers.get("last_refusal"):
        refused += f" (last: {peers['last_refusal']})"
    if peers.get("peer_check") == "sock_diag":
        return f"connections: from uid {uids} only (checked by sock_diag), {refused} refused"
    if peers.get("peer_check") == "unavailable":
        return (
            f"connections: the connecting user CANNOT be checked "
            f"({peers.get('peer_check_error')}); any local user's process with a session "
            f"header is served, {peers.get('unverified_connections', 0)} unverified so far"
        )
    return f"connections: from uid {uids} only (not checked yet)"


def render_status(body: Any, now: float | None = None) -> str:
    """The table of live keys, with the daemon's line (pid, mode, socket, log) above."""
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
            peers = endpoint.get("peers")
            if isinstance(peers, dict):
                lines.append(f"  {endpoint_peers_text(peers)}")
        socket = str(daemon.get("socket") or "")
        if socket:
            from .daemonlog import describe

            lines.append(f"log: {describe(str(mode) if mode else None, socket)}")
        idle_exit = daemon.get("exit_when_idle_s")
        if isinstance(idle_exit, int | float) and idle_exit > 0:
            lines.append(
                f"idle exit: after {humanize_seconds(float(idle_exit))} with nothing cached "
                "([daemon] exit_when_idle_s)"
            )
    table = rows(body, now)
    lines.extend(_table(COLUMNS, table) if table else ["no cached tokens"])
    sessions = session_rows(body, now)
    if sessions:
        lines.append("")
        lines.extend(_table(SESSION_COLUMNS, sessions))
    recent = recent_error_lines(body, now)
    if recent:
        lines.append("")
        lines.extend(recent)
    return "\n".join(lines)


_KIND_WORDS = (
    ("resource", "resource token", "resource tokens"),
    ("t1", "T1 exchange token", "T1 exchange tokens"),
    ("t2", "T2 exchange token", "T2 exchange tokens"),
    ("managed_identity", "managed identity token", "managed identity tokens"),
)


def flush_summary(body: Any) -> str:
    """``flush``'s one line from ``POST /v1/flush``'s answer (None: no daemon running)."""
    if not isinstance(body, dict):
        return "no daemon running: nothing cached"
    profile = body.get("profile")
    if body.get("all"):
        whose = "every profile"
    elif body.get("whole_profile"):
        whose = f"profile {profile}"
    else:
        whose = f"the selected key of profile {profile}"
    raw_dropped = body.get("dropped")
    dropped: dict[str, Any] = raw_dropped if isinstance(raw_dropped, dict) else {}
    total = int(body.get("tokens") or 0)
    sessions = int(body.get("obo_sessions") or 0)
    ended = f"; ended {sessions} OBO session{'s' if sessions != 1 else ''}" if sessions else ""
    if not total:
        if body.get("all"):
            return f"nothing was cached{ended}"
        return f"nothing cached for {whose}{ended}"
    parts = []
    for kind, one, many in _KIND_WORDS:
        n = int(dropped.get(kind) or 0)
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    return (
        f"flushed {total} cached token{'s' if total != 1 else ''} of {whose} "
        f"({', '.join(parts)}){ended}"
    )
