"""Where one trace stands, against a real Prometheus: a histogram whose buckets grow every scrape
(5 of every 10 requests under 0.1 s, 8 under 0.25 s, 9 under 0.5 s) and one exemplar of 0.3 s —
slower than ~82 % of the series (8 below its bucket, 0.2 of the 1 inside it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from correlator.model import Correlation, Span, Trace, Window
from correlator.sources._http import make_client
from correlator.sources.prometheus import PrometheusSource
from correlator.standing_run import StandingLookup, add_standings, standing_body
from tests.integration.prometheus_server import OPENMETRICS, prometheus_scraping
from tests.integration.servers import wait_until

pytestmark = pytest.mark.integration
TRACE = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
SHARES = (("0.1", 5), ("0.25", 8), ("0.5", 9), ("1", 10), ("+Inf", 10))  # cumulative, per 10 requests


@pytest.fixture(scope="module")
def growing() -> Iterator[tuple[str, int]]:
    """A target whose histogram counts 10 more requests on every scrape; yields (host:port, exemplar ns)."""
    stamp = time.time()
    scrapes = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scrapes[0] += 1
            n = scrapes[0]
            labels = 'service="api-gateway",route="/api/courses"'
            lines = ["# TYPE http_server_duration_seconds histogram"]
            for le, share in SHARES:
                line = f'http_server_duration_seconds_bucket{{{labels},le="{le}"}} {share * n}'
                if le == "0.5":
                    line += f' # {{trace_id="{TRACE}"}} 0.3 {stamp:.3f}'
                lines.append(line)
            lines += [f"http_server_duration_seconds_count{{{labels}}} {10 * n}",
                      f"http_server_duration_seconds_sum{{{labels}}} {1.5 * n}",
                      "# TYPE http_requests counter",
                      f'http_requests_total{{{labels}}} {10 * n} # {{trace_id="{TRACE}"}} 1 {stamp:.3f}',
                      "# TYPE traces_span_metrics_duration_milliseconds histogram"]
            # Jaeger's span metrics (unit ms), for the root span that left no exemplar.
            spans = 'service_name="api-gateway",span_name="GET /api/\\"courses\\"",span_kind="SPAN_KIND_SERVER"'
            for le, share in SHARES:
                bound = le if le == "+Inf" else str(float(le) * 1000)
                lines.append(f'traces_span_metrics_duration_milliseconds_bucket{{{spans},le="{bound}"}} {share * n}')
            lines += [f"traces_span_metrics_duration_milliseconds_count{{{spans}}} {10 * n}",
                      f"traces_span_metrics_duration_milliseconds_sum{{{spans}}} {1500 * n}", "# EOF"]
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", OPENMETRICS)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", round(stamp * 1000) * 1_000_000
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_an_exemplar_s_standing_in_its_series(growing: tuple[str, int]) -> None:
    target, stamp_ns = growing
    with prometheus_scraping(target, job="standing") as url:
        def counted() -> bool:
            result = httpx.get(f"{url}/api/v1/query", params={
                "query": 'sum by (le) (increase(http_server_duration_seconds_bucket{job="standing"}[5m]))'},
                timeout=2).json()["data"]["result"]
            return len(result) == 5 and all(float(r["value"][1]) > 0 for r in result)
        wait_until(counted, 30, "a few scrapes of the growing histogram")
        settings = load_settings(environ={"CORRELATOR_PROMETHEUS_URL": url})
        async with make_client(settings.prometheus) as client:
            source = PrometheusSource(settings.prometheus, client)
            exemplars = await source.search('{job="standing"}', stamp_ns - 60 * 10**9, stamp_ns + 60 * 10**9)
            assert {ex.metric for ex in exemplars} == {"http_server_duration_seconds_bucket", "http_requests_total"}
            correlation = Correlation(TRACE, Window(stamp_ns, stamp_ns), None, (), (), tuple(exemplars), (), (), (), {})
            standings = {s.exemplar_id: s for s in await StandingLookup(settings).lookup(source, correlation, None)}
    bucket = next(ex for ex in exemplars if ex.metric.endswith("_bucket"))
    counter = next(ex for ex in exemplars if ex.metric == "http_requests_total")
    mine = standings[bucket.id]
    assert mine.known and mine.bucket == "(0.25, 0.5]" and mine.faster_share == pytest.approx(0.82, abs=0.01)
    assert standing_body(mine)["message"].startswith(
        'slower than ~82% of http_server_duration_seconds{instance="' + target + '",job="standing",route="/api/courses",'
        'service="api-gateway"} between ')
    assert standing_body(standings[counter.id])["message"] == "unknown: http_requests_total is not a histogram bucket series"


async def test_a_root_span_without_exemplar_stands_on_the_span_metrics(growing: tuple[str, int]) -> None:
    target, stamp_ns = growing
    root = Span("1" * 16, None, "api-gateway", 'GET /api/"courses"', stamp_ns - 300 * 1_000_000, stamp_ns, kind="server")
    child = Span("2" * 16, root.span_id, "course-service", "SELECT courses", stamp_ns - 250 * 1_000_000, stamp_ns - 10**6)
    correlation = Correlation(TRACE, Window(root.start_ns, root.end_ns), Trace(TRACE, (root, child)), (), (), (), (), (), (), {})
    with prometheus_scraping(target, job="standing") as url:
        def counted() -> bool:
            result = httpx.get(f"{url}/api/v1/query", params={
                "query": "sum by (le) (increase(traces_span_metrics_duration_milliseconds_bucket[5m]))"},
                timeout=2).json()["data"]["result"]
            return len(result) == 5 and all(float(r["value"][1]) > 0 for r in result)
        wait_until(counted, 30, "a few scrapes of the span metrics")
        settings = load_settings(environ={"CORRELATOR_PROMETHEUS_URL": url})
        async with make_client(settings.prometheus) as client:
            standings = await StandingLookup(settings).lookup(PrometheusSource(settings.prometheus, client), correlation, None)
    [mine] = standings
    assert mine.known and mine.bucket == "(250, 500]" and mine.faster_share == pytest.approx(0.82, abs=0.01)
    body: dict[str, Any] = {"exemplars": []}
    add_standings(body, correlation, standings)
    assert body["standing"]["message"].startswith(
        'slower than ~82% of traces_span_metrics_duration_milliseconds{service_name="api-gateway",'
        'span_kind="SPAN_KIND_SERVER",span_name="GET /api/\\"courses\\""} between ')
