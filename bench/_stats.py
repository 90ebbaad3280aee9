"""Small, dependency-free statistics for benchmark samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between ranks."""
    if not samples:
        return math.nan
    data = sorted(samples)
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * (q / 100.0)
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (rank - lo))


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p99: float
    lo: float
    hi: float

    def fmt(self, unit: str = "ms", scale: float = 1.0, digits: int = 1) -> str:
        """``"12.3 ms (10.1-15.0, n=40)"``: median with min-max."""
        if self.n == 0:
            return "n/a"
        f = f"{{:.{digits}f}}"
        return (
            f"{f.format(self.median * scale)} {unit} "
            f"({f.format(self.lo * scale)}-{f.format(self.hi * scale)}, n={self.n})"
        )


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        len(samples),
        median(samples),
        percentile(samples, 99.0),
        float(min(samples)),
        float(max(samples)),
    )


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or either is NaN (never raises)."""
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b
