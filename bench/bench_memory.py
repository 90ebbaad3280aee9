"""Benchmark 5: daemon resident memory with 0, 1 000 and 10 000 cached keys.

Keys are distinct resource scopes ``api://<guid>/.default`` of the demo
agent (AutonomousApp), filled through the public API by a few keep-alive
connections. RSS is VmRSS from /proc/PID/status.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import _harness as h
import trio
from _results import Row, Section
from _uds_http import TrioUnixHTTPConnection, build_request


@dataclass(frozen=True)
class Params:
    # 1 key: the engine (MSAL, TLS) is loaded; per-key cost is measured above it
    points: tuple[int, ...] = (0, 1, 1000, 10_000)
    connections: int = 8
    target_mib: float = 100.0


QUICK = Params(points=(0, 1, 200, 1000))
FULL = Params()
TINY = Params(points=(0, 1, 10), connections=2)  # smoke test only


async def fill(sock: str, n: int, connections: int, timeout_s: float = 600.0) -> int:
    """Cache ``n`` new keys; returns how many requests failed."""
    scopes = iter([f"api://{uuid.uuid4()}/.default" for _ in range(n)])
    failed = 0

    async def worker() -> None:
        nonlocal failed
        conn = await TrioUnixHTTPConnection.open(sock)
        try:
            for scope in scopes:
                resp = await conn.send_raw(
                    build_request("POST", "/v1/token", {"profile": h.PROFILE, "scope": scope})
                )
                if resp.status != 200:
                    failed += 1
        finally:
            await conn.aclose()

    with trio.fail_after(timeout_s):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(worker)
    return failed


def _entries(daemon: h.Daemon) -> str:
    """What /v1/status lists, by kind: ``"1001 entries (resource 1000, t1 1)"``."""
    resp = daemon.request("GET", "/v1/status", timeout=120)
    if resp.status != 200:
        return f"(status {resp.status})"
    data = resp.json()
    entries = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        return "(unreadable status)"
    kinds = Counter(str(e.get("kind")) for e in entries if isinstance(e, dict))
    detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    return f"{len(entries)} entries ({detail})" if kinds else f"{len(entries)} entries"


def measure(workdir: Path, p: Params) -> Section:
    sec = Section("memory", "5. Daemon memory (RSS)")
    points: list[tuple[int, float, str, int, float]] = []
    with h.stack(workdir) as (emu, daemon):
        have = 0
        for n in p.points:
            t0 = time.monotonic()
            failed = (
                trio.run(fill, str(daemon.socket_path), n - have, p.connections) if n > have else 0
            )
            fill_s = time.monotonic() - t0
            have = n
            time.sleep(1.0)  # let freed buffers settle before sampling
            entries = _entries(daemon)
            points.append((n, daemon.rss_kib() / 1024, entries, failed, fill_s))
        stats = emu.stats()
    base = points[0][1]
    one = next((mib for n, mib, *_ in points if n == 1), base)
    for n, mib, entries, failed, fill_s in points:
        target = n == max(p.points) and n >= 10_000
        per_key = f" ({(mib - one) * 1024 / (n - 1):.1f} KiB/key above 1 key)" if n > 1 else ""
        sec.rows.append(
            Row(
                f"daemon RSS, {n:,} cached key{'' if n == 1 else 's'}",
                f"{mib:.1f} MiB{per_key}",
                f"0 keys: {base:.1f} MiB" if n else "-",
                "-",
                f"<= {p.target_mib:g} MiB" if target else "-",
                (mib <= p.target_mib and failed == 0) if target else None,
            )
        )
        sec.notes.append(
            f"{n:,} keys requested: /v1/status lists {entries}, {failed} failed "
            f"requests, fill took {fill_s:.1f} s."
        )
    sec.notes.insert(
        0,
        (
            f"Method: one daemon; keys are distinct `api://<guid>/.default` scopes of the demo "
            f"agent (AutonomousApp), each one `POST /v1/token` over {p.connections} keep-alive "
            f"connections; RSS (VmRSS) read 1 s after each fill. Emulator token requests: "
            f"{stats.get('total')} ({stats.get('by_leg')})."
        ),
    )
    if max(p.points) >= 10_000:
        sec.notes.append(
            "The daemon's cache bound (max_entries 10,000, not configurable) counts the agent's "
            "exchange tokens (T1/T2) too: when more distinct keys are asked for than fit, the "
            "least recently requested key is dropped, as the entry counts above show."
        )
    for row in sec.missed:
        sec.notes.append(
            f"Missed: {row.figure} = {row.value}. What would close it: check what each key "
            "holds (MSAL's own token cache also keeps a copy of every token unless the engine "
            "clears it; per-key locks/tasks), and keep only the token and deadlines."
        )
    return sec
