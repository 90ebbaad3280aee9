"""Benchmark 7: the first call with no daemon running, against the no-daemon path.

Two commands run as fresh processes, alternating in a shuffled order each
round so they share the machine's noise:

- first call: ``agentid-helper get --profile app`` with a fresh, empty socket
  directory each run, so the client autostarts a new daemon, which imports
  MSAL, does T1 and the AutonomousApp leg and answers; timed until the client
  exits. The daemon is stopped afterwards (SIGTERM to the pid its socket
  reports, SO_PEERCRED), outside the timing.
- no-daemon path: ``bench/nodaemon_cmdlet.py`` (fresh process, imports MSAL,
  T1 + AutonomousApp against the emulator): what a call costs without us.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import _harness as h
from _results import Row, Section
from _stats import ratio, summarize
from bench_client import _timed

#: The first call may cost this much more than doing it without the daemon.
TARGET = 1.1


@dataclass(frozen=True)
class Params:
    rounds: int


QUICK = Params(rounds=8)
FULL = Params(rounds=30)
TINY = Params(rounds=1)  # smoke test only


def _stop_daemon(sock: Path, timeout: float = 30.0) -> None:
    """SIGTERM the daemon serving ``sock`` (its pid from SO_PEERCRED); wait until it is gone.

    The first call may be answered before its daemon listens (its engine host
    answers it): wait for the socket to accept first."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        while True:
            try:
                conn.connect(str(sock))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        pid, _uid, _gid = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
    os.kill(pid, signal.SIGTERM)
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGKILL)


#: The daemon's imports by who brings them (top-level package -> group).
IMPORT_GROUPS = {
    **dict.fromkeys(("trio", "attr", "outcome", "sortedcontainers", "sniffio"), "trio"),
    **dict.fromkeys(
        ("msal", "requests", "urllib3", "charset_normalizer", "idna", "certifi", "jwt"), "MSAL"
    ),
    **dict.fromkeys(("cryptography", "_cffi_backend", "cffi"), "MSAL"),
    "h11": "h11",
    "structlog": "structlog",
    "agentid_daemon": "the daemon's modules",
    "agentid_client": "the daemon's modules",
}


def import_breakdown(env: dict[str, str], samples: int = 3) -> dict[str, float]:
    """Self import time (ms) of everything the daemon imports before it answers,
    grouped by who first imports it (IMPORT_GROUPS; stdlib modules count for the
    package that imports them); per group the smallest of ``samples`` runs of
    ``python -X importtime``."""
    code = "import agentid_daemon.app, agentid_daemon.idp.engine, agentid_daemon.broker.broker"
    runs: list[dict[str, float]] = []
    for _ in range(samples):
        proc = subprocess.run(
            [str(h.PYTHON), "-X", "importtime", "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        groups: dict[str, float] = {}
        # importtime lists a module after the modules it imported, indented one
        # level deeper: read backwards, each line's ancestors are on the stack, and
        # a module counts for the innermost ancestor (or itself) that has a group.
        stack: list[tuple[int, str]] = []  # (depth, group or "")
        for line in reversed(proc.stderr.splitlines()):
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            self_us, _cumulative, raw = line[len("import time:") :].split("|", 2)
            depth = (len(raw) - len(raw.lstrip(" "))) // 2
            while stack and stack[-1][0] >= depth:
                stack.pop()
            own = IMPORT_GROUPS.get(raw.strip().split(".")[0], "")
            group = own or next((g for _, g in reversed(stack) if g), "stdlib and other")
            stack.append((depth, own or (stack[-1][1] if stack else "")))
            groups[group] = groups.get(group, 0.0) + int(self_us) / 1000
        runs.append(groups)
    names = {g for run in runs for g in run}
    return {g: min(run.get(g, 0.0) for run in runs) for g in names}


def daemon_ready_at(log: Path) -> float | None:
    """When the daemon logged ``daemon ready`` (it listens and has told the
    waiting client), as a Unix time; None without such a line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if '"daemon ready"' in line:
            stamp = json.loads(line)["timestamp"]
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return None


def measure(workdir: Path, params: Params, *, seed: int = 7) -> Section:
    sec = Section("firstcall", "7. First call with no daemon running")
    workdir.mkdir(parents=True, exist_ok=True)
    emu = h.start_emulator(workdir)
    try:
        config = h.write_config(workdir, emu)
        base_env = h.child_env(
            {"AGENTID_HELPER_CONFIG": str(config), "XDG_CONFIG_HOME": str(workdir / "xdg")}
        )
        base_env.pop("AGENTID_HELPER_NO_AUTOSTART", None)
        nodaemon = [
            str(h.PYTHON),
            str(Path(__file__).with_name("nodaemon_cmdlet.py")),
            "--ready-file",
            str(emu.ready_file),
        ]
        client = [str(h.CLIENT), "get", "--profile", h.PROFILE]
        _timed(nodaemon, base_env)  # page in MSAL once, like a warm machine
        samples: dict[str, list[float]] = {"first": [], "nodaemon": [], "listening": []}
        rng = random.Random(seed)
        runs = 0

        def first_call() -> float:
            nonlocal runs
            runs += 1
            runtime = workdir / f"run-{runs}"
            runtime.mkdir(mode=0o700)
            sock = runtime / "agentid-helper" / "agentid-helper.sock"
            env = dict(base_env, AGENTID_HELPER_SOCKET=str(sock), XDG_RUNTIME_DIR=str(runtime))
            started = time.time()
            try:
                elapsed = _timed(client, env)
            finally:
                if sock.parent.exists():  # a daemon was started (it may not listen yet)
                    _stop_daemon(sock)
            ready = daemon_ready_at(sock.with_name("agentid-helperd.log"))
            if ready is not None:
                samples["listening"].append(ready - started)
            return elapsed

        first_call()  # page in the daemon's modules once too
        samples["listening"].clear()
        emu.reset()
        for _ in range(params.rounds):
            order = ["first", "nodaemon"]
            rng.shuffle(order)
            for name in order:
                samples[name].append(
                    first_call() if name == "first" else _timed(nodaemon, base_env)
                )
        stats = emu.stats()
        imports = import_breakdown(base_env)
    finally:
        emu.stop()

    if not samples["listening"]:
        raise h.HarnessError("no first call's daemon logged `daemon ready`")
    s = {k: summarize(v) for k, v in samples.items()}
    ms = {k: v.fmt(scale=1e3) for k, v in s.items()}
    r = ratio(s["first"].median, s["nodaemon"].median)
    listening = s["listening"].median
    r_listening = ratio(listening, s["nodaemon"].median)
    after_ms = (s["first"].median - listening) * 1000
    sec.rows.append(
        Row(
            "first call, no daemon running (autostart, T1 + AutonomousApp)",
            ms["first"],
            f"no-daemon path `nodaemon_cmdlet.py`: {ms['nodaemon']}",
            f"{r:.2f}x no-daemon path",
            f"<= {TARGET}x no-daemon path",
            r <= TARGET,
        )
    )
    sec.rows.append(
        Row(
            "first call: its daemon listening (from the client's start to the daemon's "
            "`daemon ready` line)",
            ms["listening"],
            f"no-daemon path: {ms['nodaemon']}",
            f"{r_listening:.2f}x no-daemon path; the answer "
            + (f"{after_ms:.0f} ms later" if after_ms >= 0 else f"{-after_ms:.0f} ms before it"),
            "-",
            None,
        )
    )
    sec.notes += [
        f"Method: {params.rounds} rounds; each round runs the first call and the no-daemon "
        "path once in a shuffled order, each as a fresh process timed from the harness. The "
        "first call gets a new socket directory every run (a new daemon each time, stopped "
        "after its run outside the timing). Values are medians (min-max, n). The listening "
        "row is read from each first call's daemon log (the `daemon ready` line's timestamp "
        "against the harness's clock when it started the client). Emulator token "
        f"requests: {stats.get('total')} (by leg {stats.get('by_leg')}): two per call, the "
        "first call's as well.",
        f"Difference: {(s['first'].median - s['nodaemon'].median) * 1000:.0f} ms (medians). "
        "What an autostarted daemon imports in all, parent and engine host, by who brings "
        f"it (self time, `-X importtime`, smallest of 3 runs): {_fmt_imports(imports)}; of "
        "these the first answer waits only for the host's (MSAL and the daemon's engine "
        "modules); the no-daemon path imports only the MSAL group (and a little stdlib).",
    ]
    sec.notes.append(
        "How the first call is answered: an autostarted daemon forks its engine host before "
        "any import of its own (agentid_daemon/process/engine_fork.py). While the host "
        "imports MSAL, the parent reads the configuration, resolves the request the client "
        "told it (AGENTID_HELPER_WARM_REQUEST) and judges the request body the client wrote "
        "on its socket pair (AGENTID_HELPER_FIRST_ANSWER_FD) with the API's own checks "
        "(process/first_request.py), and sends the host the verdict. The host builds the "
        "MSAL clients (two tenant discoveries), makes the request's legs (T1 and the "
        "AutonomousApp token, engine_host.first_legs) and answers the client on its pair "
        "with the body POST /v1/token would send (process/first_answer.py). The parent "
        "then imports trio, structlog, h11 and the API, caches that request from the same "
        "legs and listens; the client may have exited by then (the daemon holds its start "
        "lock until it is ready). So the first call's path is the no-daemon path's own "
        "steps plus the client's start, the spawn of a second interpreter and the host's "
        f"own modules; the parent's start (the listening row, {r_listening:.2f}x the "
        "no-daemon path) is off it."
    )
    if r > TARGET:
        sec.notes.append(
            f"Missed (<= {TARGET}x): the first call costs {r:.2f}x the no-daemon path in this "
            "run. What it adds to that path: the client's own start before the spawn (about "
            "15 ms: `python -I -S`, the hot path's failed connect, the cold path's imports), "
            "a second interpreter start (about 3 ms more than the no-daemon path's one), the "
            "host's own modules around MSAL (about 10 ms) and the answer's trip back."
        )
    return sec


def _fmt_imports(groups: dict[str, float]) -> str:
    total = sum(groups.values())
    parts = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(groups.items(), key=lambda kv: -kv[1]))
    return f"{total:.0f} ms in all ({parts})"
