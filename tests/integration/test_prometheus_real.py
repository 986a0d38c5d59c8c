"""A real Prometheus (Debian 2.42, exemplar storage on) scraping a real OpenMetrics exposer."""

from __future__ import annotations

import time

import pytest

from correlator.config import load_settings
from correlator.errors import SourceHTTPError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.prometheus import PrometheusSource
from tests.integration.servers import Prometheus

pytestmark = pytest.mark.integration


def source(prometheus: Prometheus) -> PrometheusSource:
    settings = load_settings(environ={"CORRELATOR_PROMETHEUS_URL": prometheus.url}).prometheus
    return PrometheusSource(settings, make_client(settings))


def recent() -> Window:
    now = time.time_ns()
    return Window(now - 600 * 10**9, now)


async def test_finds_the_exemplars_of_a_trace(prometheus: Prometheus) -> None:
    result = await source(prometheus).fetch(parse_trace_id(prometheus.trace_ids["courses"]), recent())
    by_metric = {ex.metric: ex for ex in result.value}
    assert set(by_metric) == {"http_server_duration_seconds_bucket", "http_requests_total"}
    bucket = by_metric["http_server_duration_seconds_bucket"]
    assert bucket.value == pytest.approx(0.145) and bucket.series["le"] == "0.25"
    assert bucket.series["service"] == "api-gateway" and bucket.span_id is not None
    assert all(ex.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" for ex in result.value)


@pytest.mark.parametrize("spelling", ["7b4c2d9e1f3a5b6c", "00000000000000007b4c2d9e1f3a5b6c", "7B4C2D9E1F3A5B6C"])
async def test_a_64bit_id_is_found_in_any_spelling(prometheus: Prometheus, spelling: str) -> None:
    """The exposer wrote the 16-char form; asking with the padded form must still find it."""
    result = await source(prometheus).fetch(parse_trace_id(spelling), recent())
    assert len(result.value) == 2


async def test_unknown_trace_is_an_empty_success(prometheus: Prometheus) -> None:
    result = await source(prometheus).fetch(parse_trace_id("ffffffffffffffffffffffffffffffff"), recent())
    assert result.value == () and not result.truncated


async def test_a_bad_selector_gives_the_servers_message(prometheus: Prometheus) -> None:
    settings = load_settings(environ={"CORRELATOR_PROMETHEUS_URL": prometheus.url,
                                      "CORRELATOR_PROMETHEUS_EXEMPLAR_SELECTOR": "{__name__=~", "CORRELATOR_PROMETHEUS_RETRY_ATTEMPTS": "1"}).prometheus
    with pytest.raises(SourceHTTPError, match="400 bad_data"):
        await PrometheusSource(settings, make_client(settings)).fetch(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"), recent())


async def test_reverse_lookup_lists_traces_of_a_metric(prometheus: Prometheus) -> None:
    found = await source(prometheus).search("http_server_duration_seconds_bucket", None, None)
    assert {ex.trace_id for ex in found} == {parse_trace_id(t).hex for t in prometheus.trace_ids.values()}
    assert [ex.timestamp_ns for ex in found] == sorted((ex.timestamp_ns for ex in found), reverse=True)
