"""The correlator's own signals: Prometheus metrics (with exemplars) and JSON logs.

Trace IDs never become metric labels (unbounded cardinality); they travel as exemplars,
which is what exemplars are for. One registry per app instance, so tests and embedded
uses never collide on the process-global default registry.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

__all__ = ["Metrics", "configure_logging", "configure_tracing", "current_exemplar", "tracer"]

# The API's tracer is a no-op until configure_tracing() installs the SDK: zero cost in tests.
tracer = trace.get_tracer("correlator")


def current_exemplar() -> dict[str, str] | None:
    """{trace_id, span_id} of the current span when it is sampled: exemplar labels (63 runes < 128)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def configure_tracing(service_name: str = "correlator") -> bool:
    """Export our own spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set.

    The SDK is an optional extra (`pip install correlator[telemetry]`); without it, or without
    an endpoint, tracing stays the API's no-op and this returns False.
    """
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logging.getLogger(__name__).warning("OTEL endpoint set but opentelemetry-sdk is not installed; not tracing")
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "correlator_requests", "HTTP requests served, by route template and status code.",
            ("route", "code"), registry=self.registry,
        )
        self.request_seconds = Histogram(
            "correlator_request_duration_seconds", "Time to answer an HTTP request, by route template.",
            ("route",), buckets=_BUCKETS, registry=self.registry,
        )
        self.source_seconds = Histogram(
            "correlator_source_duration_seconds", "Time one backend took inside a correlation, by outcome.",
            ("source", "status"), buckets=_BUCKETS, registry=self.registry,
        )
        self.cache_hits = Counter("correlator_cache_hits", "Correlations answered from the cache.", registry=self.registry)

    def observe_request(self, route: str, code: int, seconds: float, exemplar: Mapping[str, str] | None) -> None:
        self.requests.labels(route, str(code)).inc(exemplar=dict(exemplar) if exemplar else None)
        self.request_seconds.labels(route).observe(seconds, exemplar=dict(exemplar) if exemplar else None)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """OpenMetrics (with exemplars) when the scraper asks for it, else the text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Our own trace context, so our log lines correlate like any other service's.
        exemplar = current_exemplar()
        if exemplar:
            body.update(exemplar)
        for key in ("method", "route", "status", "ms", "correlated_trace_id"):
            value = getattr(record, key, None)
            if value is not None:
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(body, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr; called once by `correlator serve`, never at import."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: four lines per correlation that say nothing a failure
    # report doesn't (and cost 4 % of the server's CPU under load, bench P3).
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
