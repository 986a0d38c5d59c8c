"""A real Prometheus (Debian 2.42, exemplar storage on) scraping a real OpenMetrics exposer.

The exposer (exemplar_app.py, prometheus_client) observes a histogram and a counter with
exemplars for a 128-bit trace ID and for a 64-bit one written in its 16-character form.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from correlator.config import load_settings
from correlator.errors import SourceHTTPError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.prometheus import PrometheusSource
from tests.conftest import closed_after_test
from tests.integration.prometheus_server import ScrapeProbe, first_target, gauge_scrape, up_value
from tests.integration.servers import Prometheus

pytestmark = pytest.mark.integration

__all__ = ["gauge_scrape"]  # a fixture, imported to be found here


@pytest.fixture(scope="session", autouse=True)
def _gauge_probe_started_first(gauge_scrape: ScrapeProbe) -> Iterator[ScrapeProbe]:
    # Autouse session fixtures are set up before the requested ones, so the probe Prometheus'
    # ~5 s wait for its first scrape overlaps with the shared Prometheus' own.
    yield gauge_scrape


def source(prometheus: Prometheus, **env: str) -> PrometheusSource:
    settings = load_settings(environ={"CORRELATOR_PROMETHEUS_URL": prometheus.url, **env}).prometheus
    return PrometheusSource(settings, closed_after_test(make_client(settings)))


def recent() -> Window:
    """The last hour: the session's exposer stamped its exemplars once, when the first integration module started it;
    the modules before this one take minutes (more on a slower machine), so 10 minutes could miss them."""
    now = time.time_ns()
    return Window(now - 3600 * 10**9, now)


def raw_timestamps(prometheus: Prometheus, trace_id: str) -> set[float]:
    body = httpx.get(f"{prometheus.url}/api/v1/query_exemplars",
                     params={"query": '{job="demo"}', "start": time.time() - 3600, "end": time.time() + 60}).json()
    return {ex["timestamp"] for s in body["data"] for ex in s["exemplars"] if ex["labels"]["trace_id"] == trace_id}


async def test_finds_the_exemplars_of_a_trace(prometheus: Prometheus) -> None:
    """The histogram bucket and the counter the exposer observed for the trace, with span and value."""
    trace = prometheus.trace_ids["courses"]
    result = await source(prometheus).fetch(parse_trace_id(trace), recent())
    by_metric = {ex.metric: ex for ex in result.value}
    assert set(by_metric) == {"http_server_duration_seconds_bucket", "http_requests_total"}
    bucket, counter = by_metric["http_server_duration_seconds_bucket"], by_metric["http_requests_total"]
    assert bucket.value == pytest.approx(0.145) and bucket.series["le"] == "0.25"
    assert counter.value == 1.0
    for ex in result.value:
        assert ex.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert ex.span_id == prometheus.span_ids["courses"]
        assert ex.series["service"] == "api-gateway" and ex.series["route"] == "/courses" and ex.series["job"] == "demo"
    assert not result.truncated and result.note is None


async def test_timestamps_are_the_servers_milliseconds_exactly(prometheus: Prometheus) -> None:
    """prometheus_client stamps µs; Prometheus keeps ms; we convert its float seconds without drift."""
    trace = prometheus.trace_ids["courses"]
    result = await source(prometheus).fetch(parse_trace_id(trace), recent())
    expected = {round(ts * 1000) * 1_000_000 for ts in raw_timestamps(prometheus, trace)}
    assert {ex.timestamp_ns for ex in result.value} == expected
    assert all(ex.timestamp_ns % 1_000_000 == 0 for ex in result.value)


@pytest.mark.parametrize("spelling", ["7b4c2d9e1f3a5b6c", "00000000000000007b4c2d9e1f3a5b6c", "7B4C2D9E1F3A5B6C"])
async def test_a_64bit_id_is_found_in_any_spelling(prometheus: Prometheus, spelling: str) -> None:
    """The exposer wrote the 16-char form; asking with the padded form must still find it."""
    result = await source(prometheus).fetch(parse_trace_id(spelling), recent())
    assert len(result.value) == 2
    assert {ex.labels["trace_id"] for ex in result.value} == {"7b4c2d9e1f3a5b6c"}  # as written
    assert {ex.trace_id for ex in result.value} == {"00000000000000007b4c2d9e1f3a5b6c"}  # as compared


async def test_unknown_trace_is_an_empty_success(prometheus: Prometheus) -> None:
    result = await source(prometheus).fetch(parse_trace_id("ffffffffffffffffffffffffffffffff"), recent())
    assert result.value == () and not result.truncated and not result.not_found


async def test_a_bad_selector_gives_the_servers_message(prometheus: Prometheus) -> None:
    """2.42's own words for `{__name__=~`, with the errorType, reach the caller."""
    prom = source(prometheus, CORRELATOR_PROMETHEUS_EXEMPLAR_SELECTOR="{__name__=~", CORRELATOR_PROMETHEUS_RETRY_ATTEMPTS="1")
    with pytest.raises(SourceHTTPError) as caught:
        await prom.fetch(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"), recent())
    assert caught.value.status_code == 400
    assert str(caught.value).startswith("prometheus: 400 bad_data")
    assert "1:12: parse error: unexpected end of input inside braces" in str(caught.value)


async def test_a_query_without_selectors_is_an_empty_answer(prometheus: Prometheus) -> None:
    """2.42 answers `1+1` with 204 and no body (3.x: success without `data`); both are "none"."""
    assert await source(prometheus).search("1+1", None, None) == []


async def test_reverse_lookup_lists_traces_of_a_metric(prometheus: Prometheus) -> None:
    found = await source(prometheus).search("http_server_duration_seconds_bucket", None, None)
    assert {ex.trace_id for ex in found} == {parse_trace_id(t).hex for t in prometheus.trace_ids.values()}
    assert {ex.metric for ex in found} == {"http_server_duration_seconds_bucket"}
    assert [ex.timestamp_ns for ex in found] == sorted((ex.timestamp_ns for ex in found), reverse=True)


async def test_ready(prometheus: Prometheus) -> None:
    await source(prometheus).ready()


def test_242_fails_the_whole_scrape_for_an_exemplar_on_a_gauge(gauge_scrape: ScrapeProbe) -> None:
    """Debian's 2.42 accepts exemplars only on `_bucket`/`_total` samples: the target goes down.

    Exemplars on all metric types arrived in 2.43; until then one such line costs the target
    every sample, not just the exemplar.
    """
    target = first_target(gauge_scrape.url)
    assert target["health"] == "down"
    assert target["lastError"] == "metric name queue_depth does not support exemplars"
    assert up_value(gauge_scrape.url) == "0"
    body = httpx.get(f"{gauge_scrape.url}/api/v1/query_exemplars", params={"query": "queue_depth"}).json()
    assert body == {"status": "success", "data": []}
