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
    """SIGTERM the daemon serving ``sock`` (its pid from SO_PEERCRED); wait until it is gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(sock))
        pid, _uid, _gid = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
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
                if sock.exists():
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
            f"{r_listening:.2f}x no-daemon path; the answer {after_ms:.0f} ms later",
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
        "What the daemon imports before its first answer, by who brings it (self time, "
        f"`-X importtime`, smallest of 3 runs): {_fmt_imports(imports)}; the no-daemon path "
        "imports only the MSAL group (and a little stdlib).",
    ]
    if r > TARGET:
        sec.notes.append(
            "Where the time goes: an autostarted daemon forks its engine host before any "
            "import of its own (agentid_daemon/process/engine_fork.py). The host imports "
            "MSAL, resolves the request the client told it (AGENTID_HELPER_WARM_REQUEST), "
            "builds the MSAL clients (two tenant discoveries) and makes the request's legs "
            "(T1 and the AutonomousApp token) before anyone asks (engine_host.first_legs); "
            "the parent imports trio, structlog, h11, the config schema and the API, "
            "listens, and its broker's calls get the host's answers. A syscall timeline "
            "(3 runs under `perf trace`, which slows them; ms from the client's start): "
            "fork 31-40, host at its "
            "first discovery 167-213, parent listening 230-274, answer 4-6 ms after the "
            f"request. So the parent's start is the critical path: in this run the daemon "
            f"listened after {listening * 1000:.0f} ms ({r_listening:.2f}x the whole "
            f"no-daemon path) and answered {after_ms:.0f} ms later; the legs themselves are "
            "off the path."
        )
        sec.notes.append(
            f"Missed (<= {TARGET}x): the first call costs {r:.2f}x the no-daemon path. The "
            "first answer waits for the daemon's own stack (trio with attrs, structlog, "
            "which imports asyncio, h11, the config schema: more import time than MSAL's), "
            "started after the client's start to its spawn and a second interpreter "
            "start. Making the legs ahead took them off the path (the answer follows the "
            "listen by a few ms); what is left cannot go below the stack's imports. "
            "Closing it needs a first answer that does not wait for that stack: e.g. the "
            "engine host accepting the first connection itself and answering the request it "
            "foresaw (handing the connection to the parent, with SCM_RIGHTS, for anything "
            "else, and its tokens to the broker's cache), or forking the daemon from the "
            "client's interpreter to save the second start (about 12 ms). Neither is done."
        )
    return sec


def _fmt_imports(groups: dict[str, float]) -> str:
    total = sum(groups.values())
    parts = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(groups.items(), key=lambda kv: -kv[1]))
    return f"{total:.0f} ms in all ({parts})"
