"""Send a trace to a real OTLP/HTTP receiver with the OpenTelemetry SDK, IDs and times chosen.

The seed's GET /api/courses trace, with the trace and span IDs of the recorded Loki scenario,
so the recorded log lines join to these spans.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

MS = 1_000_000


class ScriptedIds(IdGenerator):
    def __init__(self, trace_id: str, span_ids: Iterator[str]) -> None:
        self._trace_id, self._span_ids = int(trace_id, 16), span_ids

    def generate_trace_id(self) -> int:
        return self._trace_id

    def generate_span_id(self) -> int:
        return int(next(self._span_ids), 16)


@dataclass(frozen=True)
class SentTrace:
    trace_id: str
    t0: int
    spans: dict[str, str]  # role → span id


def send_seed_trace(otlp_url: str, trace_id: str, spans: dict[str, str], t0: int, fail_db: bool = False) -> SentTrace:
    """gateway(145ms) → auth(15ms), course-service(120ms) → db query(80ms, client) + cache(5ms)."""
    ids = iter([spans["gateway"], spans["auth"], spans["courses"], spans["db"], spans["cache"]])
    generator = ScriptedIds(trace_id, ids)
    providers = {}
    for service in ("api-gateway", "auth-service", "course-service"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=generator)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_url}/v1/traces", timeout=5)))
        providers[service] = provider
    tracer = {name: p.get_tracer("correlator-tests") for name, p in providers.items()}

    gateway = tracer["api-gateway"].start_span("GET /api/courses", kind=SpanKind.SERVER, start_time=t0,
                                              attributes={"http.route": "/api/courses", "http.response.status_code": 200})
    ctx = trace.set_span_in_context(gateway)
    auth = tracer["auth-service"].start_span("validate token", context=ctx, kind=SpanKind.SERVER, start_time=t0 + 5 * MS)
    auth.end(end_time=t0 + 20 * MS)
    courses = tracer["course-service"].start_span("GET /courses", context=ctx, kind=SpanKind.SERVER, start_time=t0 + 20 * MS)
    cctx = trace.set_span_in_context(courses)
    db = tracer["course-service"].start_span("SELECT courses", context=cctx, kind=SpanKind.CLIENT, start_time=t0 + 25 * MS,
                                             attributes={"db.system": "postgresql", "db.statement": "SELECT * FROM courses WHERE active = true"})
    if fail_db:
        db.record_exception(TimeoutError("db timeout"), timestamp=t0 + 100 * MS)
        db.set_status(Status(StatusCode.ERROR, "db timeout"))
    db.end(end_time=t0 + 105 * MS)
    cache = tracer["course-service"].start_span("cache lookup", context=cctx, kind=SpanKind.INTERNAL, start_time=t0 + 106 * MS)
    cache.end(end_time=t0 + 111 * MS)
    courses.end(end_time=t0 + 140 * MS)
    gateway.end(end_time=t0 + 145 * MS)
    for provider in providers.values():
        provider.force_flush(5000)
        provider.shutdown()
    return SentTrace(trace_id, t0, spans)
