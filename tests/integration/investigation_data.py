"""A series whose slow requests share one injected cause, in all three pillars.

Twenty GET /api/courses requests of the seed's shape (gateway → auth, course service →
SELECT courses + cache), two minutes apart or less, sent to a real Jaeger with the
OpenTelemetry SDK; one exemplar each on a real histogram (OpenMetrics, one `pod` per request so
every exemplar survives), scraped by a real Prometheus; and their log lines in the recorded
Loki's shape. Twelve are slow because SELECT courses takes ~2 s (and log "slow query took … ms");
one of those never reaches Jaeger (sampled out); eight are normal (80 ms query).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind

from tests.fakes.loki import Entry

MS = 1_000_000
SERVICES = ("api-gateway", "auth-service", "course-service")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Request:
    n: int
    start_ns: int
    db_ms: int
    sent: bool = True  # False: sampled out, Jaeger never sees it
    # Which scene's request: each module that sends a scene to the session's one Jaeger passes its own, else a
    # trace sent twice (other times, same IDs) holds both sends' spans and the later scene reads the earlier's.
    series: int = 0

    @property
    def trace_id(self) -> str:
        return f"{0xA11CE000 + (self.series << 8) + self.n:032x}"

    @property
    def span_ids(self) -> tuple[str, ...]:  # gateway, auth, courses, db, cache
        return tuple(f"{0xB0B00000 + (self.series << 8) + self.n:08x}{k:08x}" for k in range(1, 6))

    @property
    def duration_ms(self) -> int:
        return self.db_ms + 65  # 25 ms before the query, 40 ms after it

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ms * MS

    @property
    def slow(self) -> bool:
        return self.db_ms >= 1000


def requests(now_ns: int, series: int = 0) -> list[Request]:
    """12 slow (one lost), 8 normal, interleaved over the last ten minutes, all ended ≥ 1 min ago; `series`: the
    scene's own trace and span IDs (one per module sending to a shared Jaeger)."""
    slow_db = [1900, 1850, 2100, 1950, 1700, 2250, 1800, 2000, 1875, 1925, 2050, 1990]
    normal_db = [80, 75, 85, 90, 78, 82, 88, 79]
    out = []
    for i, db in enumerate(slow_db + normal_db):
        start = now_ns - 11 * 60 * 10**9 + (i * 29 % 20) * 25 * 10**9
        out.append(Request(i, start, db, sent=i != 3, series=series))
    return out


class _ScriptedIds(IdGenerator):
    def __init__(self) -> None:
        self.trace_id = 0
        self.span_ids: Iterator[str] = iter(())

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return int(next(self.span_ids), 16)


def send(otlp_url: str, reqs: list[Request]) -> None:
    ids = _ScriptedIds()
    providers = {}
    for service in SERVICES:
        provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=ids)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_url}/v1/traces", timeout=5)))
        providers[service] = provider
    tracer = {name: p.get_tracer("correlator-tests") for name, p in providers.items()}
    for r in reqs:
        if not r.sent:
            continue
        ids.trace_id, ids.span_ids = int(r.trace_id, 16), iter(r.span_ids)
        t0, db_end = r.start_ns, r.start_ns + (25 + r.db_ms) * MS
        gateway = tracer["api-gateway"].start_span("GET /api/courses", kind=SpanKind.SERVER, start_time=t0,
                                                  attributes={"http.route": "/api/courses", "http.response.status_code": 200})
        ctx = trace.set_span_in_context(gateway)
        tracer["auth-service"].start_span("validate token", context=ctx, kind=SpanKind.SERVER,
                                          start_time=t0 + 5 * MS).end(end_time=t0 + 20 * MS)
        courses = tracer["course-service"].start_span("GET /courses", context=ctx, kind=SpanKind.SERVER,
                                                      start_time=t0 + 20 * MS)
        cctx = trace.set_span_in_context(courses)
        tracer["course-service"].start_span(
            "SELECT courses", context=cctx, kind=SpanKind.CLIENT, start_time=t0 + 25 * MS,
            attributes={"db.system": "postgresql", "db.statement": "SELECT * FROM courses WHERE active = true"},
        ).end(end_time=db_end)
        cache = tracer["course-service"].start_span("cache lookup", context=cctx, start_time=db_end + 1 * MS)
        cache.end(end_time=db_end + 6 * MS)
        courses.end(end_time=db_end + 35 * MS)
        gateway.end(end_time=r.end_ns)
    for provider in providers.values():
        provider.force_flush(10_000)
        provider.shutdown()


def exposition(reqs: list[Request]) -> bytes:
    """OpenMetrics: one histogram series per request (label `pod`), its exemplar on its own bucket."""
    lines = ["# TYPE http_server_duration_seconds histogram", "# HELP http_server_duration_seconds Request latency."]
    for r in reqs:
        value = r.duration_ms / 1000
        labels = f'service="api-gateway",route="/api/courses",pod="p{r.n:02d}"'
        placed = False
        for le in (*BUCKETS, float("inf")):
            bound = "+Inf" if le == float("inf") else repr(le)
            count = 1 if value <= le else 0
            line = f'http_server_duration_seconds_bucket{{{labels},le="{bound}"}} {count}'
            if count and not placed:
                placed = True
                line += f' # {{trace_id="{r.trace_id}",span_id="{r.span_ids[0]}"}} {value} {r.end_ns / 1e9:.3f}'
            lines.append(line)
        lines.append(f"http_server_duration_seconds_count{{{labels}}} 1")
        lines.append(f"http_server_duration_seconds_sum{{{labels}}} {value}")
    lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode()


def log_entries(reqs: list[Request]) -> list[Entry]:
    """Per request: the gateway's logfmt access line (ID in the body); per slow one also the course
    service's OTLP line (ID only in structured metadata), its duration varying."""
    out = []
    for r in reqs:
        gateway, _auth, _courses, db, _cache = r.span_ids
        out.append(Entry(r.end_ns, f'level=info msg="GET /api/courses 200 in {r.duration_ms}ms" trace_id={r.trace_id} '
                                   f"span_id={gateway}", {"level": "info", "service_name": "api-gateway"}))
        if r.slow:
            out.append(Entry(r.start_ns + (25 + r.db_ms) * MS, f"slow query took {r.db_ms} ms (rows=42)",
                             {"level": "warn", "service_name": "course-service"},
                             {"trace_id": r.trace_id, "span_id": db, "detected_level": "warn"}))
    return out
