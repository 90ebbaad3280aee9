"""Run every agentid-helper benchmark and write bench/RESULTS.md.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--out PATH]

Starts its own emulators and daemons in a temporary directory (nothing of
the user's config, keyring or socket is touched), runs the benchmarks one
after the other (about 10 minutes; ``--quick``: about 1 minute, a sanity
run with smaller counts and shorter windows) and writes the results table
with notes on method and on every missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness as h
import bench_client
import bench_economy
import bench_firstcall
import bench_lifecycle
import bench_memory
import bench_refresh
import bench_sidecar_size
import bench_throughput
from _results import Section, render, write

HERE = Path(__file__).resolve().parent


def benchmarks(size: str) -> dict[str, tuple[str, Callable[[Path], Section]]]:
    """Each benchmark's title and runner with its parameter set (QUICK, FULL, TINY)."""

    def pick(mod: Any) -> Any:
        return getattr(mod, size.upper())

    return {
        "client": ("1. Client cache hit", lambda w: bench_client.measure(w, pick(bench_client))),
        "throughput": (
            "2. Daemon throughput and latency (cache hits)",
            lambda w: bench_throughput.measure(w, pick(bench_throughput)),
        ),
        "economy": (
            "3. Identity-provider economy (exact emulator counts)",
            lambda w: bench_economy.measure(w, pick(bench_economy)),
        ),
        "refresh": (
            "4. Refresh never blocks cache hits",
            lambda w: bench_refresh.measure(w, pick(bench_refresh)),
        ),
        "memory": ("5. Daemon memory (RSS)", lambda w: bench_memory.measure(w, pick(bench_memory))),
        "lifecycle": (
            "6. Client burst on a cold key, slow identity provider",
            lambda w: bench_lifecycle.measure(w, pick(bench_lifecycle)),
        ),
        "firstcall": (
            "7. First call with no daemon running",
            lambda w: bench_firstcall.measure(w, pick(bench_firstcall)),
        ),
        "sidecar": (
            "8. Sidecar size",
            lambda w: bench_sidecar_size.measure(w, pick(bench_sidecar_size)),
        ),
    }


def raise_fd_limit() -> None:
    """A 1000-connection burst needs ~2000 descriptors across harness and daemon."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def describe(exc: BaseException) -> str:
    """One line for the report: the innermost errors of an exception group."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(exc)
    return "; ".join(traceback.format_exception_only(e)[-1].strip() for e in leaves[:3])


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="~1 minute sanity run")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[
            "client",
            "throughput",
            "economy",
            "refresh",
            "memory",
            "lifecycle",
            "firstcall",
            "sidecar",
        ],
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary directory (logs) for inspection",
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    started = time.monotonic()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    avail = h.components_available()
    log(f"components answering --help: {avail}")
    sections: list[Section] = []
    tmp = tempfile.mkdtemp(prefix="agentid-bench-")
    try:
        for name, (title, fn) in benchmarks(size).items():
            if args.only and name not in args.only:
                continue
            missing = [c for c, ok in avail.items() if not ok]
            if missing:
                sections.append(
                    Section(
                        name,
                        title,
                        error=(
                            f"not runnable: {', '.join(missing)} not available "
                            "(console script missing or `--help` failed)"
                        ),
                    )
                )
                log(f"{name}: skipped, missing {missing}")
                continue
            log(f"{name}: running")
            t0 = time.monotonic()
            try:
                sec = fn(Path(tmp) / name)
            except Exception as exc:
                detail = describe(exc)
                sec = Section(name, title, error=detail)
                log(f"{name}: FAILED: {detail}")
            else:
                log(f"{name}: done in {time.monotonic() - t0:.0f} s")
            sections.append(sec)
    finally:
        if args.keep_workdir:
            log(f"workdir kept: {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    cmd = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    text = render(
        sections,
        date=date,
        machine=h.machine(),
        mode=size,
        elapsed_s=time.monotonic() - started,
        command=cmd,
    )
    write(args.out, text)
    log(f"wrote {args.out}")
    print(text)
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
