"""Benchmark 6: a burst of client processes on a cold key while the identity provider is slow.

N concurrent ``agentid-helper get`` processes (the real client: connect
retries on a full backlog, one deadline) hit a freshly started daemon while
the emulator delays every token response. Reported: how many exited 0, the
identity-provider requests (exact emulator count), and the time from the
first spawn to the last token (spawning N processes on this machine's cores
is part of it). tests/reliability/test_reliability_lifecycle.py asserts the
outcome; this row records what it costs.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import _harness as h
from _results import Row, Section


@dataclass(frozen=True)
class Params:
    clients: int = 1000
    delay_s: float = 15.0  # emulator delay of every token response
    timeout_s: float = 300.0  # each client's --timeout


FULL = Params()
QUICK = Params(clients=200, delay_s=3.0)
TINY = Params(clients=10, delay_s=0.2, timeout_s=60.0)  # smoke test only


def measure(workdir: Path, params: Params) -> Section:
    sec = Section("lifecycle", "6. Client burst on a cold key, slow identity provider")
    with h.stack(workdir) as (emu, daemon):
        emu.reset()
        emu.set_faults(delay_s=params.delay_s)
        env = {**daemon.env, "AGENTID_HELPER_NO_AUTOSTART": "1"}
        argv = [str(h.CLIENT), "get", "--profile", h.PROFILE, "--timeout", str(params.timeout_s)]
        procs: list[subprocess.Popen[bytes]] = []
        t0 = time.monotonic()
        last = t0
        try:
            for _ in range(params.clients):
                procs.append(
                    subprocess.Popen(
                        argv,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            spawned = time.monotonic() - t0
            codes: dict[int, int] = {}
            for p in procs:
                code = p.wait(timeout=params.timeout_s + 60)
                last = max(last, time.monotonic())
                codes[code] = codes.get(code, 0) + 1
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        legs = dict(emu.stats()["by_leg"])
        emu.clear_faults()
    ok = codes.get(0, 0)
    requests = sum(legs.values())
    sec.rows.append(
        Row(
            f"client burst, {params.clients} processes, cold key, IdP delay {params.delay_s:g} s",
            f"{ok}/{params.clients} exit 0 (exit codes {dict(sorted(codes.items()))}); "
            f"{requests} token requests ({legs}); last token after {last - t0:.1f} s "
            f"(spawning took {spawned:.1f} s)",
            baseline="before: 385/800 exit 0 (415 exit 3, EAGAIN) with a 15 s delay",
            target="all exit 0, 2 token requests",
            met=ok == params.clients and requests == 2,
        )
    )
    sec.notes.append(
        f"Method: a fresh daemon and emulator; the emulator delays every token response by "
        f"{params.delay_s:g} s (T1, then the agent token: about {2 * params.delay_s:g} s for the "
        f"cold key); {params.clients} `agentid-helper get --profile app` processes are spawned "
        "back to back, stdout to /dev/null; the time runs from the first spawn to the last exit. "
        "The daemon sizes max_connections from its raised RLIMIT_NOFILE and listens with "
        "SOMAXCONN; clients retry EAGAIN on a full backlog until their --timeout."
    )
    return sec
