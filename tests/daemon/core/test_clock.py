"""core/clock.py: the one trio-time -> epoch-seconds conversion, and what reads it.

Every wall-clock time the daemon answers (``expires_on`` of a token, status
rows, OBO session rows) is this conversion from trio's clock; a virtual trio
clock far from the wall clock still yields epoch times near now.
"""

from __future__ import annotations

import time

import trio
import trio.testing

from agentid_daemon.core.clock import epoch_seconds, read_now


def test_epoch_seconds_measures_from_the_same_instant() -> None:
    assert epoch_seconds(None, 10.0, 1_000.0) is None
    assert epoch_seconds(70.5, 10.0, 1_000.0) == 1_060
    assert epoch_seconds(4.0, 10.0, 1_000.0) == 994  # in the past: before now_wall


async def test_read_now_pairs_the_trio_clock_with_the_wall_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(5_000)  # the virtual clock runs far from the wall clock
    before = time.time()
    now_trio, now_wall = read_now()
    assert now_trio >= 5_000
    assert before <= now_wall <= time.time()
    in_a_minute = epoch_seconds(now_trio + 60, now_trio, now_wall)
    assert in_a_minute == int(now_wall + 60)
