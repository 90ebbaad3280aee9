"""Closed-loop load generator: N processes, one keep-alive connection each.

Each client process connects, waits on a barrier shared with the others,
then sends its pre-built request, waits for the response, and repeats until
the window ends (no think time unless ``pace_s``). Only requests *sent*
after a warm-up and *completed* before the end are counted, so throughput
is ``completed / duration``. Processes, not threads: the daemon is measured
from outside, and client CPU is paid the same for the floor server.

``detailed=True`` additionally parses each response (for the refresh
benchmark): whether it came from the cache and a short fingerprint of the
token (a SHA-256 prefix, never the token) so token changes can be timed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import threading
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from _stats import Summary, summarize
from _uds_http import UnixHTTPConnection


@dataclass
class Record:
    sent_at: float  # time.monotonic(), comparable across processes (CLOCK_MONOTONIC)
    latency_s: float
    status: int
    source: str | None
    fingerprint: str | None
    client: int


@dataclass
class LoadResult:
    clients: int
    duration_s: float
    completed: int
    errors: int
    latencies_s: list[float] = field(repr=False)
    records: list[Record] = field(default_factory=list, repr=False)

    @property
    def rps(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    def latency(self) -> Summary:
        return summarize(self.latencies_s)


def _fingerprint(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    tok = data.get("access_token")
    fp = hashlib.sha256(tok.encode()).hexdigest()[:16] if isinstance(tok, str) else None
    return data.get("source"), fp


def _worker(
    index: int,
    path: str,
    request: bytes,
    barrier: Any,
    warmup_s: float,
    duration_s: float,
    pace_s: float,
    detailed: bool,
    out: Connection,
) -> None:
    lat = array("d")
    records: list[tuple[float, float, int, str | None, str | None]] = []
    completed = errors = 0
    try:
        conn = UnixHTTPConnection(path)
        barrier.wait()
        start = time.monotonic()
        measure_from = start + warmup_s
        end = measure_from + duration_s
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                break
            resp = conn.send_raw(request)
            t1 = time.monotonic()
            if t0 >= measure_from and t1 <= end:
                completed += 1
                lat.append(t1 - t0)
                if resp.status != 200:
                    errors += 1
                if detailed:
                    source, fp = _fingerprint(resp.body)
                    records.append((t0, t1 - t0, resp.status, source, fp))
            if pace_s:
                time.sleep(pace_s)
        conn.close()
        out.send(
            {"completed": completed, "errors": errors, "lat": lat.tobytes(), "records": records}
        )
    except BaseException as exc:  # report, never hang the parent
        barrier.abort()  # release the others (no-op once everyone has passed)
        out.send({"failure": f"{type(exc).__name__}: {exc}"})
    finally:
        out.close()


def run_load(
    socket_path: str,
    requests: list[bytes],
    clients: int,
    duration_s: float,
    *,
    warmup_s: float = 0.3,
    pace_s: float = 0.0,
    detailed: bool = False,
    timeout_s: float | None = None,
) -> LoadResult:
    """Run ``clients`` processes for ``warmup_s + duration_s``; client i sends
    ``requests[i % len(requests)]``."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    procs = []
    pipes = []
    for i in range(clients):
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker,
            daemon=True,
            args=(
                i,
                socket_path,
                requests[i % len(requests)],
                barrier,
                warmup_s,
                duration_s,
                pace_s,
                detailed,
                send,
            ),
        )
        p.start()
        send.close()
        procs.append(p)
        pipes.append(recv)
    limit = timeout_s if timeout_s is not None else warmup_s + duration_s + 60.0
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=30.0)
        lat: list[float] = []
        records: list[Record] = []
        completed = errors = 0
        failures = []
        deadline = time.monotonic() + limit
        for i, pipe in enumerate(pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                failures.append(f"client {i}: no result in time")
                continue
            msg = pipe.recv()
            if "failure" in msg:
                failures.append(f"client {i}: {msg['failure']}")
                continue
            completed += msg["completed"]
            errors += msg["errors"]
            arr = array("d")
            arr.frombytes(msg["lat"])
            lat.extend(arr)
            records.extend(Record(*r, client=i) for r in msg["records"])
        if failures:
            raise RuntimeError("load generator: " + "; ".join(failures[:3]))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    return LoadResult(clients, duration_s, completed, errors, lat, records)
