"""The daemon's two clocks, and the one conversion between them.

Every deadline, cache entry and session time is on trio's clock
(``trio.current_time()``), so that tests drive them with ``autojump_clock``
and a wall-clock step (NTP, suspend) moves no deadline. Wall-clock time
(integer epoch seconds) appears only at the edge, in what the daemon answers:
``expires_on``/``refresh_on`` of ``POST /v1/token`` (and so of the identity
endpoint), the ``GET /v1/status`` rows and the OBO session rows. They all
convert here, from one reading of both clocks (:func:`read_now`), so that
every time in one answer is measured against the same instant.
"""

from __future__ import annotations

import time

import trio


def read_now() -> tuple[float, float]:
    """``(trio time, epoch seconds)`` read together: the pair :func:`epoch_seconds` takes."""
    return trio.current_time(), time.time()


def epoch_seconds(trio_time: float | None, now_trio: float, now_wall: float) -> int | None:
    """A trio-clock instant as integer epoch seconds (None stays None).

    ``now_trio`` and ``now_wall`` are the same instant on both clocks
    (:func:`read_now`; tests pass fixed ones).
    """
    if trio_time is None:
        return None
    return int(now_wall + (trio_time - now_trio))
