"""Benchmark 8: the sidecar's size, beside what Microsoft asks for its own.

Microsoft's Agent ID sidecar (the "Microsoft Entra SDK for AgentID"
container, mcr.microsoft.com/entra-sdk/auth-sidecar) documents its resource
requirements in AzureAD/microsoft-identity-web, docs/sidecar/installation.md
("Resource Requirements": minimum 128Mi memory and 100m CPU; its Kubernetes
Deployment example requests exactly that, with limits of 256Mi and 250m),
published as https://learn.microsoft.com/entra/msidweb/agent-id-sdk/installation.

Measured here:

- the daemon as the sidecar runs it (the Agent ID sidecar API on a loopback
  port, configured by ``DownstreamApis__*`` as in deploy/kubernetes/), after
  serving a first token through that API and then idling: VmRSS from
  /proc/PID/status, Pss from /proc/PID/smaps_rollup (its fair share of pages
  shared with other processes), and the CPU it used while idle;
- the image deploy/kubernetes/Containerfile builds (podman, on the Debian
  base tests/support/podman_engine.py makes offline), ``podman image
  inspect`` Size, and the base's, so what the project adds shows.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import _harness as h
from _results import Row, Section

TESTS = h.ROOT / "tests"

#: Microsoft's published request for its sidecar container (see the module docstring).
MS_MEMORY_MIB = 128
MS_CPU_MILLICORES = 100
MS_SOURCE = (
    "AzureAD/microsoft-identity-web docs/sidecar/installation.md, "
    "https://learn.microsoft.com/entra/msidweb/agent-id-sdk/installation"
)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@dataclass(frozen=True)
class Params:
    idle_s: float = 10.0  # the idle window after the first token
    image: bool = True  # build the image with podman (about 30 s, 90 s more without a cached base)


QUICK = Params(idle_s=3.0)
FULL = Params()
TINY = Params(idle_s=0.5, image=False)  # smoke test only: no image build


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_ticks(pid: int) -> int:
    """utime + stime of *pid*, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _pss_kib(pid: int) -> int | None:
    """Pss of *pid* in KiB (/proc/PID/smaps_rollup), None where the kernel has none."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def _first_token(port: int) -> int:
    """One ``/AuthorizationHeaderUnauthenticated/Graph`` call, as Microsoft's apps make it."""
    url = f"http://127.0.0.1:{port}/AuthorizationHeaderUnauthenticated/Graph"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as resp:
        header = json.loads(resp.read()).get("authorizationHeader", "")
        if not str(header).startswith("Bearer "):
            raise h.HarnessError("the sidecar API answered without an authorization header")
        return int(resp.status)


def _image_sizes(workdir: Path) -> tuple[int, int]:
    """(image, base) sizes in bytes: the sidecar image built on a private podman root."""
    support = str(TESTS / "support")  # podman_engine and tooling
    if support not in sys.path:
        sys.path.insert(0, support)
    from podman_engine import Podman, base_tarball

    engine = Podman(Path(tempfile.mkdtemp(prefix="podman-", dir=workdir)))
    try:
        base = engine.import_base(base_tarball(), "localhost/agentid-bench-base:bookworm")
        engine.build_sidecar_image(workdir / "context", "localhost/agentid-helper:bench", base)
        return engine.image_size("localhost/agentid-helper:bench"), engine.image_size(base)
    finally:
        engine.reset()


def measure(workdir: Path, p: Params) -> Section:
    sec = Section("sidecar", "8. Sidecar size")
    port = _free_port()
    emu = h.start_emulator(workdir)
    try:
        daemon = h.start_daemon(
            workdir,
            emu,
            daemon_settings={"sidecar_api_listen": f'"127.0.0.1:{port}"'},
            env={
                "DownstreamApis__Graph__BaseUrl": "https://graph.microsoft.com/v1.0",
                "DownstreamApis__Graph__Scopes__0": GRAPH_SCOPE,
            },
        )
        try:
            t0 = time.monotonic()
            status = _first_token(port)
            first_ms = (time.monotonic() - t0) * 1000
            ticks0, w0 = _cpu_ticks(daemon.pid), time.monotonic()
            time.sleep(p.idle_s)
            ticks, wall = _cpu_ticks(daemon.pid) - ticks0, time.monotonic() - w0
            rss_mib = daemon.rss_kib() / 1024
            pss = _pss_kib(daemon.pid)
        finally:
            daemon.stop()
        stats = emu.stats()
    finally:
        emu.stop()
    idle_millicores = ticks / os.sysconf("SC_CLK_TCK") / wall * 1000
    pss_text = f", Pss {pss / 1024:.1f} MiB" if pss is not None else ""
    sec.rows.append(
        Row(
            "sidecar daemon idle memory (after its first token)",
            f"VmRSS {rss_mib:.1f} MiB{pss_text}",
            f"Microsoft's sidecar: {MS_MEMORY_MIB}Mi memory request (published minimum)",
            f"{rss_mib / MS_MEMORY_MIB:.2f}x its request",
            "-",
        )
    )
    sec.rows.append(
        Row(
            "sidecar daemon idle CPU",
            f"{idle_millicores:.1f}m over {wall:.1f} s",
            f"Microsoft's sidecar: {MS_CPU_MILLICORES}m CPU request",
            f"{idle_millicores / MS_CPU_MILLICORES:.2f}x its request",
            "-",
        )
    )
    image_note = "Image: not built in this mode (--tiny); the quick and full runs build it."
    if p.image:
        try:
            image, base = _image_sizes(workdir)
        except Exception as exc:  # the image row only: the memory rows stand
            sec.rows.append(Row("sidecar image size", "not measured", "-", "-", "-", False))
            image_note = f"Image: could not be built: {str(exc).splitlines()[0][:300]}"
        else:
            sec.rows.append(
                Row(
                    "sidecar image size (podman image inspect)",
                    f"{image / 1e6:.0f} MB",
                    f"its Debian bookworm minbase + python3 base: {base / 1e6:.0f} MB",
                    f"+{(image - base) / 1e6:.0f} MB for the project and its dependencies",
                    "-",
                )
            )
            image_note = (
                "Image: deploy/kubernetes/Containerfile built by podman (overlay, a private "
                "root) on the base tests/support/podman_engine.py makes with debootstrap "
                "(--variant=minbase --include=python3,python3-venv, docs, man pages, locales "
                "and apt lists left out), from the project's wheel and the venv's dependencies; "
                "Size as `podman image inspect` reports it (uncompressed layers)."
            )
    sec.notes += [
        (
            f"Method: one daemon with `[daemon] sidecar_api_listen` and the sidecar's "
            f"`DownstreamApis__Graph__*` variables (as deploy/kubernetes/deployment.yaml), "
            f"on the host's venv (Python {sys.version.split()[0]}); one "
            f"`GET /AuthorizationHeaderUnauthenticated/Graph` ({status}, {first_ms:.0f} ms: "
            f"T1 + AutonomousApp from the emulator, {stats.get('total')} token requests), then "
            f"{p.idle_s:g} s idle; VmRSS (/proc/PID/status), Pss (/proc/PID/smaps_rollup) and "
            "CPU time (utime + stime over the idle window) read afterwards."
        ),
        image_note,
        (
            f"Microsoft's figures are what it asks Kubernetes to reserve for its own sidecar "
            f"({MS_SOURCE}: minimum {MS_MEMORY_MIB}Mi / {MS_CPU_MILLICORES}m, recommended "
            "256Mi / 250m), not a measurement of it; deploy/kubernetes/deployment.yaml requests "
            "64Mi and 10m for this sidecar, with a 256Mi limit (the 10,000-key RSS in section 5 "
            "stays under it)."
        ),
    ]
    return sec
