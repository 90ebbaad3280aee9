"""A tiny dependency-free metrics registry rendered as Prometheus text (format 0.0.4).

:class:`Metrics` holds the daemon's series (all named ``agentid_helper_*``)::

    metrics.requests.inc(endpoint="/v1/token", status="200")
    metrics.identity_provider_requests.inc(leg="t1", outcome="ok")
    metrics.cache_entries.set_function(lambda: len(cache))
    body = metrics.render()

Label values are free text (escaped on output); label *names* are fixed per
series, and an ``inc()`` with other names is a programming error (ValueError).
Operations are plain dict updates: safe from the trio thread; worker threads
should not touch the registry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Protocol

from . import logs

PREFIX = "agentid_helper_"

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class RequestCounter(Protocol):
    """What an endpoint asks of :class:`Metrics` (its test doubles too): count an answer."""

    def observe_request(self, endpoint: str, status: int | str) -> None: ...


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name = name
        self.help = help_text
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self._values: dict[LabelValues, float] = {}

    def _key(self, labels: dict[str, object]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"{self.name} takes labels {sorted(self.labelnames)}, got {sorted(labels)}"
            )
        return tuple(str(labels[name]) for name in self.labelnames)

    def value(self, **labels: object) -> float:
        """The current value for these labels (0 when never set); for tests and status."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[tuple[LabelValues, float]]:
        return sorted(self._values.items())

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for values, number in self.samples():
            if values:
                pairs = ",".join(
                    f'{name}="{escape_label_value(v)}"'
                    for name, v in zip(self.labelnames, values, strict=True)
                )
                lines.append(f"{self.name}{{{pairs}}} {format_value(number)}")
            else:
                lines.append(f"{self.name} {format_value(number)}")
        return lines


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def labels(self, **labels: object) -> BoundCounter:
        """This counter with its label values checked and bound once (for hot paths)."""
        return BoundCounter(self._values, self._key(labels))

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class BoundCounter:
    """One label set of a :class:`Counter`: ``inc()`` without per-call label work."""

    __slots__ = ("_key", "_values")

    def __init__(self, values: dict[LabelValues, float], key: LabelValues) -> None:
        self._values = values
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        values = self._values
        values[self._key] = values.get(self._key, 0.0) + amount


class Gauge(_Metric):
    """A value read from a callback at render time (the daemon's gauges count live state)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._function: Callable[[], float] | None = None

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the (label-less) value from ``function`` at render time."""
        if self.labelnames:
            raise ValueError("set_function needs a gauge without labels")
        self._function = function

    def samples(self) -> list[tuple[LabelValues, float]]:
        if self._function is not None:
            try:
                return [((), float(self._function()))]
            except Exception:  # a broken callback must not break /metrics
                return [((), math.nan)]
        return super().samples()


class FunctionCounter(_Metric):
    """A label-less counter whose total another module keeps (read at render time)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, function: Callable[[], float]) -> None:
        super().__init__(name, help_text, ())
        self._function = function

    def samples(self) -> list[tuple[LabelValues, float]]:
        return [((), float(self._function()))]


class Registry:
    """Named metrics in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> Counter:
        metric = Counter(name, help_text, labelnames)
        self._add(metric)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, labelnames)
        self._add(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class Metrics(Registry):
    """The daemon's series. ``render()`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = self.counter(
            PREFIX + "requests_total",
            "API requests handled, by endpoint and HTTP status.",
            ("endpoint", "status"),
        )
        self.cache_hits = self.counter(
            PREFIX + "cache_hits_total",
            "Token requests answered from the cache, by kind (resource, t1, t2).",
            ("kind",),
        )
        self.cache_misses = self.counter(
            PREFIX + "cache_misses_total",
            "Token requests that needed a token from the identity provider, by kind.",
            ("kind",),
        )
        self.identity_provider_requests = self.counter(
            PREFIX + "identity_provider_requests_total",
            "Token requests sent to the identity provider, by leg and outcome.",
            ("leg", "outcome"),
        )
        self.refreshes = self.counter(
            PREFIX + "refreshes_total",
            "Background refreshes ahead of expiry (and retries), by kind and outcome.",
            ("kind", "outcome"),
        )
        self.cache_entries = self.gauge(
            PREFIX + "cache_entries",
            "Keys currently held by the token cache (resource tokens and T1/T2).",
        )
        self.log_lines_dropped = self._add(
            FunctionCounter(
                PREFIX + "log_lines_dropped_total",
                "Log lines dropped because the log output failed (closed pipe, full disk).",
                logs.dropped_lines,
            )
        )
        # observe_request() is called once per API request: its label sets
        # (routes x statuses, both few) are bound on first use.
        self._request_counters: dict[tuple[str, int | str], BoundCounter] = {}

    def observe_request(self, endpoint: str, status: int | str) -> None:
        """Count one API request (for the API layer)."""
        counter = self._request_counters.get((endpoint, status))
        if counter is None:
            counter = self.requests.labels(endpoint=endpoint, status=str(status))
            if len(self._request_counters) < 1024:  # endpoints are routes; a bound anyway
                self._request_counters[(endpoint, status)] = counter
        counter.inc()
