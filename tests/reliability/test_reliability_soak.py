"""Bounded soak: many clients, three modes, short lifetimes, 500s toggled on and off.

At the end the daemon must have no leaked file descriptors, a sane cache size
(the daemon exposes no task count: /metrics has ``cache_entries`` only, so
that is what is checked), a flat RSS, and the emulator must have seen about
the number of token requests that refresh-ahead implies.

Duration: ``AGENTID_SOAK_S`` seconds (default 30; CI may raise it).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from emulator_harness import Emulator
from rel_stack import Stack, fd_count, http_call, leg_counts, poll_until, rss_kib

DURATION_S = float(os.environ.get("AGENTID_SOAK_S", "30"))
LIFETIME_S = 10
WORKERS = 8
# Every period: 500s on for FAULT_ON_S, then off. Refresh-ahead leaves L/4..L/3
# (2.5-3.3 s) before expiry; a short window leaves room for two retries.
FAULT_PERIOD_S = 7.0
FAULT_ON_S = 0.7
MIN_SERVED = 0.9
RETRY_DELAY_S = 3.0  # two failed retries in a fault window: 0.5-1 s + 1-2 s
FD_SLACK = 6
RSS_BOUND_KIB = 20 * 1024
PROFILES = ("app", "user", "obo")
# Emulator legs with one key each (OBO has a key per user token: not counted).
LEGS = ("t1", "t2", "autonomous_app", "user_fic")


class UserTokens:
    """OBO input as an app would hold it: a user token renewed at half its lifetime.

    The emulator's user tokens live as long as its other tokens (10 s here), and
    each new one is a new cache key (the key's user part is its hash).
    """

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.lock = threading.Lock()
        self.issued = 0
        self._token = ""
        self._at = float("-inf")

    def current(self) -> str:
        with self.lock:
            if time.monotonic() - self._at > LIFETIME_S / 2:
                self._token = self.emu.user_token(
                    self.emu.user_upn, audience=self.emu.blueprint_app_id
                )
                self._at = time.monotonic()
                self.issued += 1
            return self._token

    def __repr__(self) -> str:
        return f"<UserTokens issued={self.issued}>"


class Worker(threading.Thread):
    """Loops ``POST /v1/token`` on fresh connections; counts answers by status."""

    def __init__(self, stack: Stack, users: UserTokens, index: int, stop: threading.Event) -> None:
        super().__init__(name=f"soak-{index}", daemon=True)
        self.stack, self.users, self.index, self.stop_event = stack, users, index, stop
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.problems: list[str] = []

    def run(self) -> None:
        i = self.index
        while not self.stop_event.wait(0.03):
            profile = PROFILES[i % len(PROFILES)]
            i += 1
            fields = {"profile": profile, "min_validity_s": 0}
            try:
                if profile == "obo":
                    fields["user_token"] = self.users.current()
                resp = http_call(self.stack.socket, "POST", "/v1/token", fields)
            except OSError as exc:
                self.problems.append(f"{profile}: {type(exc).__name__}: {exc}")
                continue
            self.statuses[(profile, resp.status)] += 1
            if resp.status == 200:
                continue
            body = resp.json() or {}
            # The only acceptable failure: a token expired while the IdP failed.
            if resp.status != 503 or body.get("error") != "identity_provider_unavailable":
                self.problems.append(f"{profile}: HTTP {resp.status}: {resp.body[:200]!r}")


def _toggle_faults(emu: Emulator, stop: threading.Event, errors: list[str]) -> None:
    while not stop.wait(FAULT_PERIOD_S - FAULT_ON_S):
        try:
            emu.set_faults(status=500)
            stop.wait(FAULT_ON_S)
            emu.clear_faults()
        except Exception as exc:  # surfaced by the test, not swallowed
            errors.append(repr(exc))
            return


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} missing")


def test_soak(
    emulator_factory: Callable[..., Emulator], stack_factory: Callable[..., Stack]
) -> None:
    emu = emulator_factory(token_lifetime_s=LIFETIME_S)
    stack = stack_factory(emu, idle_timeout_s=120)
    pid = stack.pid
    for profile in PROFILES:  # warm up: every key cached, every code path imported
        assert stack.token(profile, min_validity_s=0).status == 200
    for _ in range(50):
        assert stack.call("GET", "/v1/status").status == 200
    fd_base, rss_base = fd_count(pid), rss_kib(pid)
    emu.reset()
    started = time.monotonic()

    stop = threading.Event()
    users = UserTokens(emu)
    workers = [Worker(stack, users, i, stop) for i in range(WORKERS)]
    fault_errors: list[str] = []
    toggler = threading.Thread(target=_toggle_faults, args=(emu, stop, fault_errors), daemon=True)
    for thread in (*workers, toggler):
        thread.start()
    try:
        stop.wait(DURATION_S)
    finally:
        stop.set()
        for thread in (*workers, toggler):
            thread.join(timeout=30)
        emu.clear_faults()
    elapsed = time.monotonic() - started
    stats = emu.stats()["token_requests"]
    legs = leg_counts(emu)

    assert not fault_errors, fault_errors
    assert not any(w.is_alive() for w in workers)
    problems = [p for w in workers for p in w.problems]
    assert not problems, problems[:10]
    statuses = sum((w.statuses for w in workers), Counter())
    for profile in ("app", "user"):
        # Keys that stay cached are served nearly throughout: a refresh failing
        # in a fault window is retried (backoff 0.5-1 s, then 1-2 s) before the
        # token expires, or soon after if the retries were unlucky.
        assert statuses[(profile, 200)] > MIN_SERVED * sum(
            n for (p, _), n in statuses.items() if p == profile
        ), statuses
    assert stack.daemon.process is not None
    assert stack.daemon.process.poll() is None

    # File descriptors: every client connection closed -> back near the baseline.
    poll_until(
        lambda: fd_count(pid) <= fd_base + FD_SLACK,
        timeout=10,
        what=f"daemon fds back near {fd_base} (now {fd_count(pid)})",
    )
    # Memory: flat within a generous bound.
    rss = rss_kib(pid)
    assert rss - rss_base < RSS_BOUND_KIB, f"RSS grew from {rss_base} KiB to {rss} KiB"
    # Cache size sane: app, user, T1, T2 and one OBO key per user token (an
    # expired, idle one may already be evicted), nothing else piling up.
    metrics = stack.call("GET", "/metrics").body.decode()
    entries = _metric(metrics, "agentid_helper_cache_entries")
    assert 5 <= entries <= 4 + users.issued + 1, (entries, users)

    print(
        f"soak: {elapsed:.1f}s statuses={dict(statuses)} legs={legs} "
        f"errors={stats['errors']} fds {fd_base}->{fd_count(pid)} rss {rss_base}->{rss} KiB "
        f"entries={entries} user_tokens={users.issued}"
    )
    # Identity-provider traffic matches refresh-ahead: each key is refreshed
    # every 2/3..3/4 of a lifetime, plus retries after the injected 500s (which
    # can also push one refresh back by up to ~RETRY_DELAY_S).
    retries = stats["errors"]
    low = elapsed / (0.75 * LIFETIME_S + RETRY_DELAY_S) - 1
    high = elapsed / (0.66 * LIFETIME_S) + 2 + retries
    for leg in LEGS:
        assert low <= legs[leg] <= high, (
            f"{leg}: {legs[leg]} requests in {elapsed:.1f}s, expected {low:.1f}..{high:.1f} "
            f"(all legs {legs}, errors {retries})"
        )
