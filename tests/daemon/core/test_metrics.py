"""Metrics registry and Prometheus text rendering."""

from __future__ import annotations

import math
import re

import pytest

from agentid_daemon.core.metrics import (
    Metrics,
    Registry,
    escape_label_value,
    format_value,
)

# One sample line of the text exposition format (name, optional labels, value).
SAMPLE_RE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? '
    r"(NaN|[+-]Inf|-?[0-9.e+-]+)$"
)


def test_daemon_series_are_declared_with_help_and_type() -> None:
    text = Metrics().render()
    for name, kind in [
        ("agentid_helper_requests_total", "counter"),
        ("agentid_helper_cache_hits_total", "counter"),
        ("agentid_helper_cache_misses_total", "counter"),
        ("agentid_helper_identity_provider_requests_total", "counter"),
        ("agentid_helper_refreshes_total", "counter"),
        ("agentid_helper_cache_entries", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text
    assert text.endswith("\n")


def test_counters_with_labels_render_sorted_and_parseable() -> None:
    m = Metrics()
    m.observe_request("/v1/token", 200)
    m.observe_request("/v1/token", 200)
    m.observe_request("/v1/token", 502)
    m.identity_provider_requests.inc(leg="t1", outcome="ok")
    m.cache_entries.set_function(lambda: 7)
    text = m.render()
    assert 'agentid_helper_requests_total{endpoint="/v1/token",status="200"} 2\n' in text
    assert 'agentid_helper_requests_total{endpoint="/v1/token",status="502"} 1\n' in text
    assert 'agentid_helper_identity_provider_requests_total{leg="t1",outcome="ok"} 1' in text
    assert "agentid_helper_cache_entries 7\n" in text
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE_RE.match(line), line
    assert m.requests.value(endpoint="/v1/token", status=200) == 2
    assert m.requests.value(endpoint="/nope", status=200) == 0


def test_label_and_help_escaping() -> None:
    reg = Registry()
    c = reg.counter("x_total", 'help with \\ and\nnewline "quoted"', ("path",))
    c.inc(path='a"b\\c\nd')
    text = reg.render()
    assert '# HELP x_total help with \\\\ and\\nnewline "quoted"\n' in text
    assert 'x_total{path="a\\"b\\\\c\\nd"} 1\n' in text
    assert escape_label_value("plain") == "plain"


def test_bad_usage_is_rejected() -> None:
    reg = Registry()
    c = reg.counter("c_total", "c", ("a",))
    with pytest.raises(ValueError):
        c.inc(b="x")
    with pytest.raises(ValueError):
        c.inc()
    with pytest.raises(ValueError):
        c.inc(-1, a="x")
    with pytest.raises(ValueError):
        reg.counter("c_total", "again")
    with pytest.raises(ValueError):
        reg.counter("bad-name", "x")
    with pytest.raises(ValueError):
        reg.counter("ok_total", "x", ("__reserved",))
    with pytest.raises(ValueError):
        reg.gauge("g", "g", ("l",)).set_function(lambda: 1)


def test_gauges_read_their_callback() -> None:
    reg = Registry()
    g = reg.gauge("g", "a gauge")
    g.set_function(lambda: 3.5)
    assert "g 3.5\n" in reg.render()
    broken = reg.gauge("broken", "callback raises")
    broken.set_function(lambda: 1 / 0)
    assert "broken NaN\n" in reg.render()
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(2.0) == "2"
    assert format_value(0.25) == "0.25"


def test_bound_counter_shares_the_series() -> None:
    m = Metrics()
    hits = m.cache_hits.labels(kind="resource")
    hits.inc()
    hits.inc(2)
    m.cache_hits.inc(kind="resource")
    assert m.cache_hits.value(kind="resource") == 4
    with pytest.raises(ValueError):
        hits.inc(-1)
    with pytest.raises(ValueError):
        m.cache_hits.labels(leg="t1")
    assert 'agentid_helper_cache_hits_total{kind="resource"} 4' in m.render()


def test_observe_request_int_and_str_status_are_one_series() -> None:
    m = Metrics()
    for status in (200, "200", 200, 404):
        m.observe_request("/v1/token", status)
    assert m.requests.value(endpoint="/v1/token", status="200") == 3
    assert m.requests.value(endpoint="/v1/token", status="404") == 1
    text = m.render()
    assert text.count('endpoint="/v1/token",status="200"') == 1
