"""The correlator is correlatable itself: its spans, its log lines and its metric exemplars share IDs."""

from __future__ import annotations

import json
import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from correlator.api import create_app
from correlator.config import load_settings
from correlator.telemetry import _JsonFormatter
from tests.apiclient import TRACE, Backends

EXPORTER = InMemorySpanExporter()


def setup_module() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # once per process; the module-level tracer proxies to it


async def test_own_request_has_a_span_an_exemplar_and_a_log_line(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(load_settings(environ={}), Backends().transports()))
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await client.get(f"/correlate/{TRACE}", headers={"traceparent": incoming})
    assert response.status == 200
    spans = EXPORTER.get_finished_spans()
    server = next(s for s in spans if s.name == "GET /correlate/{trace_id}")
    own_trace = format(server.context.trace_id, "032x")
    assert own_trace == "0af7651916cd43dd8448eb211c80319c"  # W3C context from the caller is continued
    assert {"source jaeger", "source loki", "source prometheus"} <= {s.name for s in spans}
    metrics = await (await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})).text()
    line = next(line for line in metrics.splitlines() if line.startswith("correlator_requests_total{code=\"200\""))
    assert f'trace_id="{own_trace}"' in line  # exemplar: our own trace, never the correlated one as a label
    assert TRACE not in metrics

    with trace.get_tracer("t").start_as_current_span("log-here") as span:
        record = logging.LogRecord("correlator", logging.INFO, __file__, 1, "correlated", (), None)
        body = json.loads(_JsonFormatter().format(record))
    assert body["trace_id"] == format(span.get_span_context().trace_id, "032x") and body["level"] == "info"


async def test_served_logs_carry_no_per_request_chatter_from_the_http_client(aiohttp_client: Any, capsys: Any) -> None:
    """`correlator serve`'s logging: our own lines stay, httpx's INFO line per backend call does not."""
    from correlator.telemetry import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging()
        client = await aiohttp_client(create_app(load_settings(environ={}), Backends().transports()))
        assert (await client.get(f"/correlate/{TRACE}")).status == 200
        logging.getLogger("correlator.test").info("still ours")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert [line["msg"] for line in lines if line["logger"] == "correlator.test"] == ["still ours"]
    assert not [line for line in lines if line["logger"].startswith(("httpx", "httpcore"))], lines
