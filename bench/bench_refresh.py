"""Benchmark 4: refreshes never block cache hits.

Short-lived tokens make refresh-ahead happen inside the window; the emulator
delays every token response by 2 s, so each refresh is in flight for at
least 2 s. Paced clients (one process and keep-alive connection per key)
keep asking for their key meanwhile; the figure is the worst latency of the
requests sent while a refresh was provably in flight: between "new token
minus the emulator delay" and "new token first seen".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import _harness as h
from _loadgen import Record, run_load
from _results import Row, Section
from _stats import percentile, ratio
from _uds_http import build_request


@dataclass(frozen=True)
class Params:
    lifetime_s: int = 30
    window_s: float = 30.0
    delay_s: float = 2.0
    keys: int = 4
    pace_s: float = 0.02  # 50 req/s per key: far below saturation, so queueing is not measured


QUICK = Params(lifetime_s=14, window_s=13.5)
FULL = Params()
TINY = Params(lifetime_s=6, window_s=5.0, delay_s=1.0, keys=2, pace_s=0.02)  # smoke only


def refresh_windows(records: list[Record], delay_s: float) -> list[tuple[float, float]]:
    """Intervals in which some refresh was in flight, from token changes per client."""
    windows = []
    by_client: dict[int, list[Record]] = {}
    for r in records:
        by_client.setdefault(r.client, []).append(r)
    for recs in by_client.values():
        recs.sort(key=lambda r: r.sent_at)
        last = None
        for r in recs:
            if r.fingerprint and last and r.fingerprint != last:
                windows.append((r.sent_at - delay_s, r.sent_at))
            if r.fingerprint:
                last = r.fingerprint
    return windows


def during(records: list[Record], windows: list[tuple[float, float]]) -> list[Record]:
    return [r for r in records if any(a <= r.sent_at <= b for a, b in windows)]


def measure(workdir: Path, p: Params) -> Section:
    sec = Section("refresh", "4. Refresh never blocks cache hits")
    with h.stack(workdir, token_lifetime_s=p.lifetime_s) as (emu, daemon):
        bodies = [
            {"profile": h.PROFILE, "scope": f"api://{uuid.uuid4()}/.default", "min_validity_s": 0}
            for _ in range(p.keys)
        ]
        for body in bodies:
            daemon.token(body)
        emu.reset()
        emu.set_faults(delay_s=p.delay_s)
        try:
            res = run_load(
                str(daemon.socket_path),
                [build_request("POST", "/v1/token", b) for b in bodies],
                p.keys,
                p.window_s,
                warmup_s=0.0,
                pace_s=p.pace_s,
                detailed=True,
            )
        finally:
            emu.clear_faults()
        stats = emu.stats()
    recs = res.records
    windows = refresh_windows(recs, p.delay_s)
    inside = during(recs, windows)
    hits = [r for r in inside if r.status == 200 and r.source == "cache"]
    misses = [r for r in recs if r.status != 200 or r.source != "cache"]
    worst = max((r.latency_s for r in hits), default=float("nan")) * 1e3
    inside_ids = {id(r) for r in inside}
    outside = [r.latency_s for r in recs if id(r) not in inside_ids]
    out_max = max(outside, default=float("nan")) * 1e3
    refreshed = len({r.client for r in inside})
    ok = bool(hits) and worst <= 10.0 and not misses
    sec.rows.append(
        Row(
            f"max cache-hit latency during refreshes ({p.delay_s:g} s emulator delay)",
            f"{worst:.2f} ms (p99 {percentile([r.latency_s for r in hits], 99) * 1e3:.2f} ms, "
            f"n={len(hits)}, {len(windows)} refreshes)",
            f"outside refreshes: max {out_max:.2f} ms, p99 {percentile(outside, 99) * 1e3:.2f} ms "
            f"(n={len(outside)})",
            f"max {ratio(worst, out_max):.2f}x outside",
            "<= 10 ms",
            ok,
        )
    )
    sec.notes += [
        f"Method: emulator tokens live {p.lifetime_s} s; {p.keys} keys (distinct api:// "
        f"scopes of the demo agent) are warmed, then the emulator delays every token "
        f"response by {p.delay_s:g} s and {p.keys} client processes (one per key, keep-alive, "
        f"{p.pace_s * 1e3:g} ms pause between requests, `min_validity_s: 0`) run for "
        f"{p.window_s:g} s. A refresh window is the {p.delay_s:g} s before a client first sees "
        "a new token: a refresh was in flight then. The figure is the worst latency of the "
        "cache hits sent inside any refresh window (any key's, so a blocked event loop "
        "would show on every client).",
        f"{len(recs)} requests; {len(misses)} were not 200 cache hits; refreshes observed on "
        f"{refreshed}/{p.keys} keys; emulator token requests in the window: "
        f"{stats.get('total')} ({stats.get('by_leg')}).",
    ]
    if not windows:
        sec.notes.append(
            "Missed: no refresh happened in the window; the daemon did not "
            "refresh ahead (or the emulator ignored --token-lifetime-s)."
        )
    elif misses:
        sec.notes.append(
            f"Missed: {len(misses)} request(s) were not served from the cache (or failed) "
            "while tokens were being refreshed: the refresh did not complete before the old "
            "token's validity ran out, or a request waited for it. What would close it: "
            "refresh earlier or serve the old token until the new one is in."
        )
    elif not ok:
        slow_in = sum(1 for r in hits if r.latency_s > 0.010)
        slow_out = sum(1 for x in outside if x > 0.010)
        sec.notes.append(
            f"Missed: every request was a cache hit and none waited for a refresh (each "
            f"takes >= {p.delay_s:g} s; the worst hit took {worst:.1f} ms), but hits during "
            f"refreshes were slower than outside them: {slow_in} of {len(hits)} above "
            f"10 ms inside refresh windows against {slow_out} of {len(outside)} outside. "
            "The refresh's own CPU work (MSAL building and parsing requests, TLS, JSON, in a "
            "worker thread that holds the GIL while running Python) competes with the event "
            "loop, on top of this machine's noise (outside refreshes the max is "
            f"{out_max:.1f} ms). What would close it: less Python work per refresh in the "
            "worker thread (profile one refresh), and more cores than busy processes."
        )
    return sec
