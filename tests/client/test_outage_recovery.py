"""An identity-provider outage, as a user lives it: the real client, an
autostarted daemon and the emulator's outage fault (the connection closed
without an answer).

Was: after the outage, plain ``get`` and kubectl kept failing for the rest of
a backoff of up to 5 minutes ("next attempt in 46 s"), and a cached token with
less than ``min_validity_s`` left was refused although it still worked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack
from emulator_harness import Emulator

from agentid_client import daemon_api

GIT_GET = "protocol=https\nhost=git.example.test\n\n"


@pytest.fixture
def outage_emu(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory()


@pytest.fixture
def stack(outage_emu: Emulator, tmp_path: Path) -> Iterator[Env]:
    with client_stack(outage_emu, tmp_path) as env:
        yield env


def t1_requests(emu: Emulator) -> int:
    return int(emu.stats()["token_requests"]["by_leg"].get("t1", 0))


def until_ok(run: Callable[[], Any], within_s: float) -> tuple[Any, float]:
    """Repeat ``run`` (a client call) until it exits 0; the result and the seconds it took."""
    started = time.monotonic()
    while True:
        result = run()
        if result.returncode == 0 or time.monotonic() - started > within_s:
            return result, time.monotonic() - started
        time.sleep(0.3)


def test_recovery_is_seen_by_the_next_request(stack: Env, outage_emu: Emulator) -> None:
    emu = outage_emu
    emu.set_faults(outage=True)
    try:
        # Each forced request tries at once and fails: T1 now backs off for a
        # minute or more (2**6 s nominal after seven failures).
        for _ in range(7):
            forced = stack.run("get", "--force-refresh")
            assert forced.returncode == 4, forced.stderr
        plain = stack.run("get")
        assert plain.returncode == 4, plain.stderr
        # The error says where it went and what happens next.
        assert f"identity provider {emu.authority_host} (T1 blueprint exchange)" in plain.stderr
        assert "retries the identity provider automatically in" in plain.stderr
        assert "--force-refresh" in plain.stderr
        kubectl = stack.run("kubectl-credential", "--profile", "user")
        assert kubectl.returncode == 4, kubectl.stderr
    finally:
        emu.clear_faults()
    got, took = until_ok(lambda: stack.run("get"), within_s=6)
    assert got.returncode == 0, got.stderr
    assert took < 6
    cred, took = until_ok(lambda: stack.run("kubectl-credential", "--profile", "user"), 6)
    assert cred.returncode == 0, cred.stderr
    assert json.loads(cred.stdout)["status"]["token"].count(".") == 2
    assert took < 6


def test_a_burst_during_an_outage_makes_one_call(stack: Env, outage_emu: Emulator) -> None:
    emu = outage_emu
    emu.set_faults(outage=True)
    try:
        assert stack.run("get").returncode == 4  # the daemon is up; T1 failed once
        # Wait until the key's last failure (the background retries' too) is
        # old enough for a request to try again: 2.2 s without a T1 request.
        before = t1_requests(emu)
        for _ in range(20):
            time.sleep(2.2)
            if t1_requests(emu) == before:
                break
            before = t1_requests(emu)

        def one(_: int) -> int:
            resp = daemon_api.call(
                "POST", "/v1/token", {}, autostart=False, timeout=60, socket_path=stack.sock
            )
            return resp.status

        with ThreadPoolExecutor(max_workers=100) as pool:
            statuses = list(pool.map(one, range(100)))
        assert statuses == [503] * 100
        # One fetch, joined or answered fast by everyone else (a dropped
        # connection may be tried twice by the HTTP layer).
        assert 1 <= t1_requests(emu) - before <= 2
    finally:
        emu.clear_faults()


def test_a_still_valid_token_is_served_during_an_outage(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    """Tokens live 200 s, min_validity_s is 300: every request wants a new one."""
    emu = emulator_factory(token_lifetime_s=200)
    with client_stack(emu, tmp_path) as stack:
        first = stack.run("get", "--format", "json")
        assert first.returncode == 0, first.stderr
        fresh = json.loads(first.stdout)
        assert "stale" not in fresh
        emu.set_faults(outage=True)
        try:
            again = stack.run("get", "--format", "json")
            assert again.returncode == 0, again.stderr
            body = json.loads(again.stdout)
            assert body["access_token"] == fresh["access_token"]
            assert body["expires_on"] == fresh["expires_on"]  # its real expiry
            assert body["stale"] is True
            assert "serving the cached token" in body["warning"]
            assert emu.authority_host in body["warning"]  # why: where it failed
            assert "warning: no fresh token could be had" in again.stderr

            cred = stack.run("kubectl-credential")
            assert cred.returncode == 0, cred.stderr
            status = json.loads(cred.stdout)["status"]
            assert status["token"] == fresh["access_token"]
            expiry = datetime.fromisoformat(status["expirationTimestamp"]).timestamp()
            # The token's own expiry (less kubectl's small safety margin:
            # formats.exec_expiry), not "now" nor min_validity_s early.
            assert fresh["expires_on"] - 30 <= expiry <= fresh["expires_on"]
            assert "warning:" in cred.stderr

            git = stack.run("git-credential", "get", stdin=GIT_GET)
            assert git.returncode == 0, git.stderr
            assert f"password_expiry_utc={fresh['expires_on']}" in git.stdout
            assert "warning:" in git.stderr

            forced = stack.run("get", "--force-refresh")
            assert forced.returncode == 4, forced.stderr  # asks for proof: no stale token
        finally:
            emu.clear_faults()
