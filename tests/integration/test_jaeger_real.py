"""A real Jaeger v2 (Go-built, in-memory storage), fed over OTLP/HTTP by the OpenTelemetry SDK.

What this server showed that the upstream fixtures do not (v2.13.0 = module v1.76.0):
- `/api/v3/*` success bodies are `text/plain; charset=utf-8`; `/api/traces` ones `application/json`;
- the 404 bodies are exactly NOT_FOUND_V3 / NOT_FOUND_V1 of the unit tests (text/plain, trailing newline);
- an unknown path, even under `/api/`, is `200` with the UI's index.html — not `404 page not found`;
- the memory store ignores the v3 time window (a window far from the trace still finds it);
- the UI model truncates times to whole µs, adds `error=true` to ERROR spans, and writes array
  attributes as JSON text (v3 keeps the array).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.model import Span, Trace, Window
from correlator.sources._http import make_client
from correlator.sources.jaeger import JaegerSource, parse_ui_trace
from tests.conftest import closed_after_test
from tests.integration.jaeger_server import JaegerServer, run_jaeger
from tests.sources.test_jaeger import NOT_FOUND_V1, NOT_FOUND_V3

pytestmark = pytest.mark.integration

MS = 1_000_000
FOUND_WITHIN_S = 15
SERVICES = ("api-gateway", "auth-service", "course-service")


@dataclass(frozen=True, slots=True)
class SentTrace:
    trace_id: str
    t0: int  # ns; every span's times are t0 + a whole number of ms + 123 ns (to see the µs cut)
    span_ids: dict[str, str]  # role → span ID


@pytest.fixture(scope="session")
def jaeger_v2() -> Iterator[JaegerServer]:
    with run_jaeger() as server:
        yield server


def send_trace(otlp_url: str) -> SentTrace:
    """gateway SERVER → gateway CLIENT → auth SERVER; gateway SERVER → course SERVER → db CLIENT (error) + cache INTERNAL.

    One TracerProvider per service (its own Resource/service.name), the way three processes would
    export; the hops between services go through W3C traceparent headers, as they would on the wire.
    """
    providers = {}
    for service in SERVICES:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_url}/v1/traces", timeout=5)))
        providers[service] = provider
    tracer = {name: p.get_tracer("correlator-integration") for name, p in providers.items()}
    propagator = TraceContextTextMapPropagator()

    def headers_from(span: otel_trace.Span) -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=otel_trace.set_span_in_context(span))
        return carrier

    t0 = (time.time_ns() // 1000) * 1000 - 5_000 * MS + 123  # 123 ns past a µs: the UI model drops it
    gateway = tracer["api-gateway"].start_span("GET /api/courses", kind=SpanKind.SERVER, start_time=t0, attributes={
        "http.route": "/api/courses", "http.response.status_code": 200, "sampled.ratio": 0.25,
        "feature.enabled": True, "courses.ids": [3, 5, 8]})
    auth_call = tracer["api-gateway"].start_span("POST /auth/validate", context=otel_trace.set_span_in_context(gateway),
                                                 kind=SpanKind.CLIENT, start_time=t0 + 2 * MS)
    auth = tracer["auth-service"].start_span("POST /auth/validate", context=propagator.extract(headers_from(auth_call)),
                                             kind=SpanKind.SERVER, start_time=t0 + 4 * MS)
    auth.set_status(Status(StatusCode.OK))
    auth.end(end_time=t0 + 14 * MS)
    auth_call.end(end_time=t0 + 16 * MS)
    courses = tracer["course-service"].start_span("GET /courses", context=propagator.extract(headers_from(gateway)),
                                                  kind=SpanKind.SERVER, start_time=t0 + 20 * MS)
    in_courses = otel_trace.set_span_in_context(courses)
    db = tracer["course-service"].start_span("SELECT courses", context=in_courses, kind=SpanKind.CLIENT,
                                             start_time=t0 + 25 * MS, attributes={"db.system": "postgresql"})
    db.record_exception(TimeoutError("db timeout"), timestamp=t0 + 100 * MS)
    db.set_status(Status(StatusCode.ERROR, "db timeout"))
    db.end(end_time=t0 + 105 * MS)
    cache = tracer["course-service"].start_span("cache lookup", context=in_courses, kind=SpanKind.INTERNAL,
                                                start_time=t0 + 106 * MS)
    cache.end(end_time=t0 + 111 * MS)
    courses.end(end_time=t0 + 140 * MS)
    gateway.end(end_time=t0 + 145 * MS)
    for provider in providers.values():
        assert provider.force_flush(5000)
        provider.shutdown()
    spans = {"gateway": gateway, "auth_call": auth_call, "auth": auth, "courses": courses, "db": db, "cache": cache}
    trace_id = f"{gateway.get_span_context().trace_id:032x}"
    assert {f"{s.get_span_context().trace_id:032x}" for s in spans.values()} == {trace_id}
    return SentTrace(trace_id, t0, {role: f"{s.get_span_context().span_id:016x}" for role, s in spans.items()})


@pytest.fixture(scope="session")
def sent(jaeger_v2: JaegerServer) -> SentTrace:
    return send_trace(jaeger_v2.otlp_url)


def jaeger_source(server: JaegerServer) -> JaegerSource:
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": server.query_url}).jaeger
    return JaegerSource(settings, closed_after_test(make_client(settings)))


async def fetch_until_found(source: JaegerSource, sent: SentTrace, window: Window | None = None) -> Trace:
    """Jaeger stores asynchronously (batch processor): poll, bounded, until all six spans are in."""
    deadline = time.monotonic() + FOUND_WITHIN_S
    while time.monotonic() < deadline:
        result = await source.fetch(parse_trace_id(sent.trace_id), window)
        if result.value is not None and len(result.value.spans) >= len(sent.span_ids):
            return result.value
        await asyncio.sleep(0.1)
    raise AssertionError(f"trace {sent.trace_id} did not appear in Jaeger within {FOUND_WITHIN_S} s")


async def test_the_trace_comes_back_with_its_structure(jaeger_v2: JaegerServer, sent: SentTrace) -> None:
    """v3 gives every span with its parent, service, kind, status, events and typed attributes, in ns."""
    trace = await fetch_until_found(jaeger_source(jaeger_v2), sent, Window(sent.t0 - 60_000 * MS, sent.t0 + 60_000 * MS))
    ids = sent.span_ids
    spans = {s.span_id: s for s in trace.spans}
    assert trace.trace_id == sent.trace_id and len(trace.spans) == len(spans) == 6
    parent = {role: spans[span_id].parent_span_id for role, span_id in ids.items()}
    assert parent == {"gateway": None, "auth_call": ids["gateway"], "auth": ids["auth_call"],
                      "courses": ids["gateway"], "db": ids["courses"], "cache": ids["courses"]}
    shape = {role: (spans[i].service, spans[i].kind, spans[i].status) for role, i in ids.items()}
    assert shape == {
        "gateway": ("api-gateway", "server", "unset"),
        "auth_call": ("api-gateway", "client", "unset"),
        "auth": ("auth-service", "server", "ok"),
        "courses": ("course-service", "server", "unset"),
        "db": ("course-service", "client", "error"),
        "cache": ("course-service", "internal", "unset"),
    }
    db = spans[ids["db"]]
    assert (db.operation, db.status_message, db.start_ns, db.end_ns) == ("SELECT courses", "db timeout", sent.t0 + 25 * MS, sent.t0 + 105 * MS)
    (event,) = db.events
    assert (event.name, event.time_ns, event.attributes["exception.type"], event.attributes["exception.message"]) == (
        "exception", sent.t0 + 100 * MS, "TimeoutError", "db timeout")
    assert spans[ids["gateway"]].attributes == {"http.route": "/api/courses", "http.response.status_code": 200,
                                                "sampled.ratio": 0.25, "feature.enabled": True, "courses.ids": [3, 5, 8]}


async def test_unknown_trace_is_not_found(jaeger_v2: JaegerServer) -> None:
    result = await jaeger_source(jaeger_v2).fetch(parse_trace_id(secrets.token_hex(16)), None)
    assert result.value is None and result.not_found and result.note is None  # v3 answered; no fallback


def to_ui_model(span: Span) -> Span:
    """What the UI model can carry of a span: whole µs, arrays as JSON text."""
    attributes = {k: (str(v).replace(" ", "") if isinstance(v, list) else v) for k, v in span.attributes.items()}
    events = tuple(replace(e, time_ns=e.time_ns // 1000 * 1000) for e in span.events)
    return replace(span, start_ns=span.start_ns // 1000 * 1000, end_ns=span.end_ns // 1000 * 1000,
                   attributes=attributes, events=events)


async def test_the_v1_ui_model_gives_the_same_trace(jaeger_v2: JaegerServer, sent: SentTrace) -> None:
    """/api/traces/{id} (µs, processes, tags, references) parses to the v3 trace, up to what the UI model loses."""
    v3 = await fetch_until_found(jaeger_source(jaeger_v2), sent)
    answer = httpx.get(f"{jaeger_v2.query_url}/api/traces/{sent.trace_id}", timeout=5)
    assert answer.status_code == 200
    v1 = parse_ui_trace(answer.json()["data"][0])
    assert v1.trace_id == v3.trace_id
    # Now and then (1 run in ~10 here) v2.13's clock-skew adjuster misses a parent that is in the answer and
    # says so in a span's `@jaeger@warnings`, in either encoding and not always in both reads: Jaeger's
    # note, not a parsing difference. Any such note must be that one; the rest must be equal.
    both = [*v1.spans, *v3.spans]
    warned = [str(s.attributes["@jaeger@warnings"]).replace(" ", "").lower() for s in both if "@jaeger@warnings" in s.attributes]
    assert all("skippingclockskewadjustment" in w for w in warned), warned

    def unwarned(spans: Iterable[Span]) -> list[Span]:
        return sorted((replace(s, attributes={k: v for k, v in s.attributes.items() if k != "@jaeger@warnings"})
                       for s in spans), key=lambda s: s.span_id)

    assert unwarned(v1.spans) == unwarned(map(to_ui_model, v3.spans))


async def test_wire_facts_the_unit_tests_rely_on(jaeger_v2: JaegerServer, sent: SentTrace) -> None:
    """The 404 bodies the unit tests fake are byte for byte what Jaeger sends, as text/plain."""
    await fetch_until_found(jaeger_source(jaeger_v2), sent)
    unknown = secrets.token_hex(16)
    v3 = httpx.get(f"{jaeger_v2.query_url}/api/v3/traces/{unknown}", timeout=5)
    v1 = httpx.get(f"{jaeger_v2.query_url}/api/traces/{unknown}", timeout=5)
    assert (v3.status_code, v3.text, v3.headers["content-type"]) == (404, NOT_FOUND_V3, "text/plain; charset=utf-8")
    assert (v1.status_code, v1.text, v1.headers["content-type"]) == (404, NOT_FOUND_V1, "text/plain; charset=utf-8")
    bad = httpx.get(f"{jaeger_v2.query_url}/api/v3/traces/{sent.trace_id}", params={"start_time": "yesterday"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("malformed parameter start_time")


async def test_readiness(jaeger_v2: JaegerServer) -> None:
    await jaeger_source(jaeger_v2).ready()
