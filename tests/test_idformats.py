"""Trace IDs as the world writes them: one row per format, the table of docs/imperfect-data.md.

Each row is read three ways, as a user meets it: `POST /correlate/from-log` (the trace ID it
extracts), the Loki join (the correlation's lookups find the line, and its span ID and level are
read), and Grafana's derived field (the generated regex, run in Node's RegExp as Grafana runs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.logfields import derived_field_regex, extract_trace_context
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.loki import LokiSource
from tests.conftest import skip_or_fail

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
DD_TRACE = str(int(TRACE[16:], 16))  # Datadog logs the lower 64 bits in decimal: 11803532876627986230
DD_SPAN = str(int(SPAN, 16))
LOW64 = "0" * 16 + TRACE[16:]
SETTINGS = load_settings(environ={})
T0 = 1_795_572_505_053_254_099


@dataclass(frozen=True)
class Row:
    name: str
    line: str
    level: str | None
    trace_id: str = TRACE  # what from-log reads (32 hex)
    lower64_only: bool = False
    derived: bool = True  # Grafana's derived field links it (to the hex ID as written)


ROWS = [
    Row("ECS JSON, flat dotted keys",
        json.dumps({"@timestamp": "2026-11-25T10:00:00.000Z", "log.level": "info", "message": "listing courses",
                    "trace.id": TRACE, "span.id": SPAN, "service.name": "course-service"}), "info"),
    Row("ECS JSON, nested objects",
        json.dumps({"@timestamp": "2026-11-25T10:00:00.000Z", "log": {"level": "info"}, "message": "listing courses",
                    "trace": {"id": TRACE}, "span": {"id": SPAN}}), "info"),
    Row("Spring Boot 3.0/3.1 Micrometer, Sleuth: [app,trace,span]",
        f"2026-11-25T10:00:00.123Z  INFO [course-service,{TRACE},{SPAN}] 1 --- [nio-8080-exec-1] c.e.CourseController"
        " : listing courses", "info"),
    Row("Spring Boot ≥ 3.2: [trace-span]",
        f"2026-11-25T10:00:00.123Z  WARN 1 --- [course-service] [nio-8080-exec-1] [{TRACE}-{SPAN}] c.e.CourseController"
        " : slow query", "warn"),
    Row("Python OpenTelemetry logging, default format",
        f"2026-11-25 10:00:00,123 ERROR [app] [views.py:42] [trace_id={TRACE} span_id={SPAN} "
        "resource.service.name=course-service trace_sampled=True] - query failed", "error"),
    Row("Python OpenTelemetry logging, JSON record (otelTraceID)",
        json.dumps({"asctime": "2026-11-25 10:00:00,123", "levelname": "INFO", "message": "listing courses",
                    "otelTraceID": TRACE, "otelSpanID": SPAN, "otelServiceName": "course-service"}), "info"),
    Row("W3C traceparent in an access log",
        f'10.0.0.7 - - [25/Nov/2026:10:00:00 +0000] "GET /api/courses HTTP/1.1" 200 512 "-" "curl/8.5.0" '
        f'traceparent="00-{TRACE}-{SPAN}-01"', None),
    Row("Google Cloud structured logging",
        json.dumps({"severity": "NOTICE", "message": "listing courses",
                    "logging.googleapis.com/trace": f"projects/my-project/traces/{TRACE}",
                    "logging.googleapis.com/spanId": SPAN, "logging.googleapis.com/trace_sampled": True}), "notice"),
    Row("Datadog JSON (dd.trace_id decimal, lower 64 bits)",
        json.dumps({"timestamp": "2026-11-25T10:00:00.123Z", "level": "INFO", "message": "listing courses",
                    "dd.trace_id": DD_TRACE, "dd.span_id": DD_SPAN, "dd.service": "course-service", "dd.env": "prod"}),
        "info", LOW64, True, False),
    Row("Datadog text injection (Python)",
        f"2026-11-25 10:00:00,123 INFO [app] [views.py:42] [dd.service=course-service dd.env=prod dd.version=1.0 "
        f"dd.trace_id={DD_TRACE} dd.span_id={DD_SPAN}] - listing courses", "info", LOW64, True, False),
    Row("Datadog nested (dd-trace-js + pino)",
        json.dumps({"level": 30, "time": 1795572505053, "msg": "listing courses",
                    "dd": {"trace_id": DD_TRACE, "span_id": DD_SPAN, "service": "course-service"}}),
        "info", LOW64, True, False),
]
IDS = [row.name for row in ROWS]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_from_log_reads_the_trace_id(row: Row) -> None:
    """What `POST /correlate/from-log` correlates: the right ID, and for Datadog only its lower 64 bits, flagged."""
    context = extract_trace_context(row.line, SETTINGS.loki)
    assert (context.trace_id, context.lower64_only) == (row.trace_id, row.lower64_only)


def test_the_datadog_decimal_is_never_read_as_hex() -> None:
    """Before this table, the decimal was read as a hex ID of another trace; now it is never hex."""
    for row in ROWS:
        if row.lower64_only:
            assert extract_trace_context(row.line, SETTINGS.loki).trace_id != parse_trace_id(DD_TRACE).hex


def _loki_answer(lines: list[str]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"], "result": [
        {"stream": {"service_name": "course-service"},
         "values": [[str(T0 + i), line, {}] for i, line in enumerate(lines)]}]}}


def _substring_loki(lines: list[str], seen: list[str]) -> httpx.MockTransport:
    """Answers `{…} |= "x"` with the lines containing x (Loki's line filter is a substring match)."""
    def handle(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        seen.append(query)
        needle = re.search(r'\|= "([^"]*)"', query)
        hits = [line for line in lines if needle and needle.group(1) in line]
        return httpx.Response(200, json=_loki_answer(hits))
    return httpx.MockTransport(handle)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
async def test_the_loki_join_finds_the_line_and_reads_span_and_level(row: Row) -> None:
    """The correlation's lookups find the line (for Datadog: the correlation from-log starts, on its
    lower 64 bits), keep it, and read its span ID and level: the join places it on the span."""
    trace_id = replace(parse_trace_id(row.trace_id), lower64_only=row.lower64_only)
    other = json.dumps({"level": "info", "trace_id": "0af7651916cd43dd8448eb211c80319c"})
    seen: list[str] = []
    loki = replace(SETTINGS.loki, url="http://loki", retry_attempts=1)
    async with make_client(loki, _substring_loki([row.line, other], seen)) as client:
        found = await LokiSource(loki, client).fetch(trace_id, Window(T0, T0 + 10**9), ["course-service"])
    assert [(line.line, line.span_id, line.level) for line in found.value] == [(row.line, SPAN, row.level)]


async def test_a_lower64_correlation_also_finds_full_ids_ending_in_those_bits() -> None:
    """From a Datadog line, the 16-hex line filter finds the other services' 32-hex lines of the trace."""
    trace_id = replace(parse_trace_id(LOW64), lower64_only=True)
    lines = [f"level=info trace_id={TRACE} span_id={SPAN}", ROWS[-2].line,
             f"level=info trace_id=ffff{TRACE[4:]}",  # another 128-bit ID sharing the low 64 bits: same evidence, kept
             f"level=info trace_id=aa{TRACE[16:]}"]  # 18 hex: not an ID ending in those bits
    seen: list[str] = []
    loki = replace(SETTINGS.loki, url="http://loki", retry_attempts=1)
    async with make_client(loki, _substring_loki(lines, seen)) as client:
        found = await LokiSource(loki, client).fetch(trace_id, Window(T0, T0 + 10**9), ["course-service"])
    assert sorted(line.line for line in found.value) == sorted(lines[:3])
    assert any(f'|= "{DD_TRACE}"' in q for q in seen) and any(f'|= "{TRACE[16:]}"' in q for q in seen)


async def test_a_full_id_correlation_asks_loki_twice_as_before() -> None:
    """The decimal lookup exists only for IDs known by their lower 64 bits: no extra query otherwise."""
    async with httpx.AsyncClient() as client:
        source = LokiSource(SETTINGS.loki, client)
        assert len(source.queries(parse_trace_id(TRACE), ["a"])) == 2
        assert len(source.queries(replace(parse_trace_id(LOW64), lower64_only=True), ["a"])) == 3


def _expected_capture(row: Row) -> str | None:
    return TRACE if row.derived else None


def test_the_derived_field_regex_in_python() -> None:
    pattern = re.compile(derived_field_regex(SETTINGS.loki))
    assert pattern.groups == 1
    for row in ROWS:
        match = pattern.search(row.line)
        assert (match.group(1).lower() if match else None) == _expected_capture(row), row.name


def test_the_derived_field_regex_in_javascript() -> None:
    """Grafana runs it in the browser: `new RegExp(regex)` and `line.match(…)[1]`, in Node here."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed")
    script = ("const [re, lines] = JSON.parse(process.argv[1]); const r = new RegExp(re); const u = new RegExp(re, 'u');"
              "console.log(JSON.stringify(lines.map(l => { const m = l.match(r), n = l.match(u);"
              " return [m ? m[1] : null, n ? n[1] : null]; })))")
    lines = [row.line for row in ROWS]
    out = subprocess.run([node, "-e", script, json.dumps([derived_field_regex(SETTINGS.loki), lines])],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[_expected_capture(row)] * 2 for row in ROWS]


@pytest.mark.parametrize("line", [
    f"x-request-id=00-{TRACE}",  # traceparent-like prefix without the whole shape
    f"[v1,{TRACE}]",  # bracketed, but not [app,trace,span]
    f"parent.trace.id={TRACE}",  # another namespace's field
    f"dd.trace_id={TRACE[:20]}",  # a hex-looking Datadog value is still not read as hex … nor as decimal
])
def test_lookalikes_of_the_well_known_shapes_are_not_read(line: str) -> None:
    assert extract_trace_context(line, SETTINGS.loki).trace_id is None
    assert re.search(derived_field_regex(SETTINGS.loki), line) is None


async def test_from_log_on_a_datadog_line_looks_up_the_lower_64_bits_and_says_so(aiohttp_client: Any) -> None:
    """Jaeger is asked for the zero-padded 64-bit ID (it finds only a 64-bit trace), Loki for the 16-hex
    suffix and the decimal, and the answer warns that only the lower 64 bits were known."""
    from correlator.api import create_app
    from tests.apiclient import Backends

    backends = Backends()
    client = await aiohttp_client(create_app(load_settings(environ={}), backends.transports()))
    response = await client.post("/correlate/from-log", data=ROWS[-3].line)
    body = await response.json()
    # The mocked Jaeger answers every ID with the 128-bit trace, which is not a 64-bit one: no trace by the low bits;
    # the recorded Loki lines carry the whole ID ending in them, so the second round correlates that one.
    assert response.status == 200 and body["trace_id"] == TRACE
    assert any("lower 64 bits" in w for w in body["warnings"])
    asked = [str(r.url) for r in backends.requests]
    assert any(f"/api/v3/traces/{LOW64}" in url for url in asked)
    loki_queries = [r.url.params["query"] for r in backends.requests if r.url.path.endswith("query_range")]
    assert any(DD_TRACE in q for q in loki_queries) and any(TRACE[16:] in q for q in loki_queries)


async def test_from_log_on_a_datadog_line_finds_the_whole_id_in_the_lines_of_the_other_services(aiohttp_client: Any) -> None:
    """Jaeger has no 64-bit trace by those bits, but the other services' lines carry the whole 128-bit ID ending
    in them: the correlation is redone with it, and the answer says where the upper bits came from."""
    from correlator.api import create_app
    from tests.apiclient import Backends, otlp_trace

    backends = Backends()
    backends.jaeger = lambda r: (httpx.Response(200, json=otlp_trace()) if TRACE in r.url.path
                                 else httpx.Response(404, json={"error": {"httpCode": 404, "message": "trace not found"}}))
    client = await aiohttp_client(create_app(load_settings(environ={}), backends.transports()))
    body = await (await client.post("/correlate/from-log", data=ROWS[-3].line)).json()
    assert body["trace_id"] == TRACE and body["summary"]["span_count"] == 5
    assert any(f"the whole ID {TRACE} was read from" in w for w in body["warnings"])
    asked = [r.url.path for r in backends.requests if r.url.path.startswith("/api/v3/traces/")]
    assert asked[0].endswith(LOW64) and asked[-1].endswith(TRACE)
