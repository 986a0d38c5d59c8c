"""Without a tracer provider the service skips the no-op span machinery (bench P3), and still does what the
OpenTelemetry API's no-op tracer did: a caller's W3C context is continued into our log lines and exemplars."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from correlator import telemetry
from correlator.api import create_app
from correlator.config import load_settings
from tests.apiclient import TRACE, Backends

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # another test module may have installed the SDK
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    # The API's proxy tracer keeps the real one it once reached: a fresh proxy, as in a process that never traced.
    monkeypatch.setattr(telemetry.tracer, "_api", trace.get_tracer("correlator"))
    assert telemetry.tracing_off()


class Lines(logging.Handler):
    """Formats each record as it is emitted (as the served StreamHandler does: inside the request's context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(telemetry._JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("correlator.access")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


@pytest.mark.usefixtures("tracing_off")
async def test_a_caller_s_context_reaches_our_log_line_and_exemplar_without_a_provider(aiohttp_client: Any,
                                                                                     access_lines: Lines) -> None:
    client = await aiohttp_client(create_app(load_settings(environ={}), Backends().transports()))
    plain = await client.get(f"/correlate/{TRACE}")
    traced = await client.get(f"/correlate/{TRACE}", headers={"traceparent": f"00-{CALLER_TRACE}-b7ad6b7169203331-01"})
    assert plain.status == traced.status == 200
    assert (await plain.json())["trace_id"] == (await traced.json())["trace_id"] == TRACE
    first, second = access_lines.lines
    assert "trace_id" not in first and first["route"] == "/correlate/{trace_id}" and first["status"] == 200
    assert second["trace_id"] == CALLER_TRACE and second["span_id"] == "b7ad6b7169203331"
    metrics = await (await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})).text()
    line = next(line for line in metrics.splitlines() if line.startswith('correlator_requests_total{code="200"'))
    assert f'trace_id="{CALLER_TRACE}"' in line


@pytest.mark.usefixtures("tracing_off")
def test_spans_cost_nothing_and_change_nothing_while_off() -> None:
    with telemetry.server_span("GET /x", {}) as server:
        assert server is trace.INVALID_SPAN
        with telemetry.tracer.start_as_current_span("source jaeger") as span:
            span.set_attribute("correlator.source.status", "ok")  # accepted, as the no-op span accepts it
            assert span is trace.get_current_span() is trace.INVALID_SPAN
    caller = trace.NonRecordingSpan(trace.SpanContext(int(CALLER_TRACE, 16), 0xB7AD6B7169203331, True,
                                                      trace.TraceFlags(trace.TraceFlags.SAMPLED)))
    with trace.use_span(caller), telemetry.tracer.start_as_current_span("source loki") as span:
        assert span is caller and telemetry.current_exemplar() == {"trace_id": CALLER_TRACE, "span_id": "b7ad6b7169203331"}


def _api_says_off() -> bool:
    """The OpenTelemetry API's own answer, which `tracing_off` gives without its environment look-up (bench P3)."""
    return isinstance(trace.get_tracer_provider(), telemetry._NO_OP_PROVIDERS)


def test_tracing_off_answers_what_the_api_answers_in_every_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.util._once import Once

    def fresh() -> None:  # a process that never set a provider (set-once: reset it by hand)
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
        monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())

    fresh()
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    assert telemetry.tracing_off() is True and _api_says_off() is True

    # A provider named by the environment: the API loads it on first use; tracing_off must not answer before.
    monkeypatch.setenv("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider")
    assert telemetry.tracing_off() is False
    assert trace._TRACER_PROVIDER is not None  # loaded by the API's path, as a span would have loaded it
    assert _api_says_off() is False

    for provider, off in ((TracerProvider(), False), (trace.NoOpTracerProvider(), True)):
        fresh()
        monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
        trace.set_tracer_provider(provider)
        assert telemetry.tracing_off() is off and _api_says_off() is off

    # An os.environ that is not CPython's mapping (a test's plain dict): the API's own check decides (and loads).
    fresh()
    monkeypatch.setattr("os.environ", {"OTEL_PYTHON_TRACER_PROVIDER": "default_tracer_provider"})
    answer = telemetry.tracing_off()
    assert trace._TRACER_PROVIDER is not None and answer is _api_says_off()
    fresh()
    monkeypatch.setattr("os.environ", {})
    assert telemetry.tracing_off() is True and _api_says_off() is True
