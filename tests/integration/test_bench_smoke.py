"""Smoke tests for bench/: the pieces work, and the whole run works in a tiny mode.

No timing assertions: benchmarks measure, tests only check that they can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from tooling import ROOT

BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import _loadgen  # noqa: E402
import _results  # noqa: E402
import _stats  # noqa: E402
import _uds_http  # noqa: E402
import bench_refresh  # noqa: E402
import floor_server  # noqa: E402

_BODY = b'{"access_token":"x.y.z","source":"cache"}'
RESPONSE = b"HTTP/1.1 200 \r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


def short_sock(tmp_path: Path, name: str) -> str:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = tmp_path / name
    if len(str(path)) < 100:
        return str(path)
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="bsm"), name)


# --- raw HTTP parsing -------------------------------------------------------


def test_parse_response_content_length_and_incomplete() -> None:
    assert _uds_http.parse_response(RESPONSE[:20]) is None
    assert _uds_http.parse_response(RESPONSE[:-1]) is None
    resp, used = _uds_http.parse_response(RESPONSE + b"HTTP/1.1 204")  # type: ignore[misc]
    assert used == len(RESPONSE)
    assert resp.status == 200
    assert resp.raw == RESPONSE
    assert resp.headers["content-length"] == str(len(_BODY))
    assert "x.y.z" not in repr(resp)  # bodies carry tokens: never in a repr


def test_parse_response_chunked_204_and_eof() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    resp, used = _uds_http.parse_response(chunked)  # type: ignore[misc]
    assert resp.body == b"abcde"
    assert used == len(chunked)
    resp, _ = _uds_http.parse_response(b"HTTP/1.1 204 No Content\r\n\r\n")  # type: ignore[misc]
    assert resp.status == 204
    assert resp.body == b""
    no_len = b"HTTP/1.1 200 OK\r\n\r\nbody"
    assert _uds_http.parse_response(no_len) is None
    resp, _ = _uds_http.parse_response(no_len, eof=True)  # type: ignore[misc]
    assert resp.body == b"body"
    with pytest.raises(_uds_http.HTTPProtocolError):
        _uds_http.parse_response(b"SSH-2.0\r\n\r\n")


def test_build_request_has_length_and_host() -> None:
    req = _uds_http.build_request("POST", "/v1/token", {"profile": "p"})
    head, _, body = req.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/token HTTP/1.1\r\nHost: localhost")
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"profile": "p"}
    assert b"Connection: close" in _uds_http.build_request("GET", "/x", keep_alive=False)


# --- statistics and results -------------------------------------------------


def test_stats() -> None:
    assert _stats.median([3, 1, 2]) == 2
    assert _stats.percentile([0, 10], 50) == 5
    assert _stats.percentile([], 50) != _stats.percentile([], 50)  # NaN
    s = _stats.summarize([0.010, 0.020, 0.030])
    assert (s.n, s.lo, s.hi) == (3, 0.010, 0.030)
    assert s.fmt(scale=1e3) == "20.0 ms (10.0-30.0, n=3)"
    assert _stats.ratio(1, 0) != _stats.ratio(1, 0)


def test_render_results() -> None:
    ok = _results.Section(
        "a",
        "A",
        rows=[_results.Row("fig|1", "1 ms", "floor", "1.0x", "<= 2x", True)],
        notes=["method"],
    )
    miss = _results.Section("b", "B", rows=[_results.Row("fig2", "9", met=False)])
    broken = _results.Section("c", "C", error="daemon missing")
    text = _results.render(
        [ok, miss, broken],
        date="2026-01-01T00:00:00Z",
        machine="m",
        mode="tiny",
        elapsed_s=1,
        command="cmd",
    )
    assert "| figure | value | floor or baseline | ratio | target | met? | date | cores |" in text
    assert "fig\\|1" in text
    assert "**no**" in text
    assert "**Could not run:** daemon missing" in text
    assert "- Missed: fig2." in text


def test_refresh_windows() -> None:
    R = _loadgen.Record
    recs = [
        R(0.0, 0.001, 200, "cache", "a", 0),
        R(5.0, 0.001, 200, "cache", "a", 0),
        R(6.0, 0.001, 200, "cache", "b", 0),
        R(5.5, 0.001, 200, "cache", "c", 1),
    ]
    windows = bench_refresh.refresh_windows(recs, 2.0)
    assert windows == [(4.0, 6.0)]
    assert [r.sent_at for r in bench_refresh.during(recs, windows)] == [5.0, 6.0, 5.5]


# --- floor server and load generator --------------------------------------


async def test_floor_server_keepalive_and_pipelining(tmp_path: Path) -> None:
    sock = short_sock(tmp_path, "f.sock")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(floor_server.serve, sock, RESPONSE)
            conn = await _uds_http.TrioUnixHTTPConnection.open(sock)
            for _ in range(3):
                resp = await conn.request("POST", "/v1/token", {"profile": "p"})
                assert resp.raw == RESPONSE
            # two requests in one write: two answers
            req = _uds_http.build_request("POST", "/v1/token", {"x": 1})
            await conn.stream.send_all(req + req)
            assert (await conn.send_raw(b"")).raw == RESPONSE
            assert (await conn.send_raw(b"")).raw == RESPONSE
            await conn.aclose()
            nursery.cancel_scope.cancel()


def test_loadgen_against_floor_server_process(tmp_path: Path) -> None:
    resp_file = tmp_path / "resp.http"
    resp_file.write_bytes(RESPONSE)
    sock = short_sock(tmp_path, "floor.sock")
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "floor_server.py"),
            "--socket",
            sock,
            "--response-file",
            str(resp_file),
            "--ready-file",
            str(ready),
        ]
    )
    try:
        for _ in range(200):
            if ready.exists():
                break
            assert proc.poll() is None
            time.sleep(0.05)
        req = _uds_http.build_request("POST", "/v1/token", {"profile": "p"})
        res = _loadgen.run_load(sock, [req], 2, 0.2, warmup_s=0.05, detailed=True, timeout_s=30)
        assert res.completed > 0
        assert res.errors == 0
        assert len(res.latencies_s) == res.completed == len(res.records)
        assert {r.fingerprint for r in res.records}
        assert {r.source for r in res.records} == {"cache"}
        assert {r.client for r in res.records} <= {0, 1}
    finally:
        proc.terminate()
        proc.wait(10)


def test_loadgen_reports_connect_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="load generator"):
        _loadgen.run_load(
            str(tmp_path / "nothing.sock"), [b"GET / HTTP/1.1\r\n\r\n"], 2, 0.1, timeout_s=20
        )


def test_floor_server_rejects_non_http_response(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"nope")
    assert (
        floor_server.main(["--socket", short_sock(tmp_path, "s"), "--response-file", str(bad)]) == 2
    )


def test_nodaemon_cmdlet_bad_ready_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "nodaemon_cmdlet.py"),
            "--ready-file",
            str(tmp_path / "missing.json"),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert b"cannot read" in proc.stderr


# --- the whole run, tiny ----------------------------------------------------


def _components_present() -> bool:
    venv = BENCH.parent / ".venv" / "bin"
    return all(
        (venv / n).exists()
        for n in ("agentid-helper", "agentid-helperd", "agentid-helper-emulator")
    )


@pytest.mark.skipif(not _components_present(), reason="console scripts not installed")
def test_run_tiny_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--tiny", "--out", str(out)],
        capture_output=True,
        timeout=110,
        cwd=BENCH.parent,
    )
    text = out.read_text()
    assert "Could not run" not in text, proc.stderr.decode()[-2000:]
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    for title in (
        "1. Client cache hit",
        "2. Daemon throughput",
        "3. Identity-provider economy",
        "4. Refresh never blocks",
        "5. Daemon memory",
        "7. First call with no daemon running",
        "8. Sidecar size",
    ):
        assert f"## {title}" in text
    # figures that need no timing are checked exactly: single-flight counts
    assert "cold burst, 50 concurrent, AutonomousApp | 2 token requests" in text
