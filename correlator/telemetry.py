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
from contextlib import AbstractContextManager, nullcontext
from types import EllipsisType
from typing import Any

import orjson
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

__all__ = ["Metrics", "configure_logging", "configure_tracing", "current_exemplar", "log_access", "server_span", "tracer"]

_NO_OP_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


# The API's own check (`get_tracer_provider`) looks up OTEL_PYTHON_TRACER_PROVIDER in `os.environ` whenever no provider
# is set, and `in os.environ` raises and catches a KeyError when it is absent: ~1.5 µs, four times per correlation (bench
# P3). The same two questions, asked of the API's module state and of the environment's own dict (keys as os encodes them).
_UNKNOWN = object()
try:
    _PROVIDER_KEY: Any = os.environ.encodekey("OTEL_PYTHON_TRACER_PROVIDER")  # as CPython's os.environ keys its dict
except (AttributeError, TypeError):  # another os.environ: the API's own check only
    _PROVIDER_KEY = _UNKNOWN


def tracing_off() -> bool:
    """No tracer provider installed (configure_tracing, a test, an embedding app): the API's spans do nothing.

    What `isinstance(trace.get_tracer_provider(), (ProxyTracerProvider, NoOpTracerProvider))` says: no provider
    set and none named by the environment is the API's proxy (off) without asking further; anything else
    (a provider set, or one to load from OTEL_PYTHON_TRACER_PROVIDER) is asked of the API."""
    data = getattr(os.environ, "_data", None)  # at each call: a test may replace os.environ
    if (type(data) is dict and getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and _PROVIDER_KEY is not _UNKNOWN
            and _PROVIDER_KEY not in data):
        return True
    return isinstance(trace.get_tracer_provider(), _NO_OP_PROVIDERS)


class _Tracer:
    """The API's tracer for "correlator", minus its cost while tracing is off (bench P3: the no-op spans'
    context managers and context attach/detach were ~4 % of a small correlation's CPU).

    Off, the API's no-op tracer hands back the current span when it is a non-recording one (none, or a
    caller's propagated context) and makes it current again, which changes nothing: so that span is
    yielded as is. Anything else (a provider installed, a recording span current) takes the API's path."""

    def __init__(self) -> None:
        self._api = trace.get_tracer("correlator")

    def start_as_current_span(self, name: str, context: Context | None = None,
                              kind: trace.SpanKind = trace.SpanKind.INTERNAL) -> AbstractContextManager[trace.Span]:
        if context is None and tracing_off():
            current = trace.get_current_span()
            if current is trace.INVALID_SPAN:  # nothing current (the usual case): the one shared context
                return _NO_SPAN
            if isinstance(current, trace.NonRecordingSpan):
                return nullcontext(current)
        return self._api.start_as_current_span(name, context=context, kind=kind)


tracer = _Tracer()

_fields: tuple[object, frozenset[str]] = (None, frozenset())


def _propagated_fields() -> frozenset[str]:
    """The headers the global propagator reads (traceparent, tracestate, baggage by default), per propagator."""
    global _fields
    textmap = propagate.get_global_textmap()
    if _fields[0] is not textmap:
        _fields = (textmap, frozenset(textmap.fields))
    return _fields[1]


def server_span(name: str, headers: Mapping[str, str]) -> AbstractContextManager[trace.Span]:
    """The span of one served request, continuing the caller's context (W3C headers). Tracing off and no
    context sent: nothing to continue or record, so no span machinery at all (the invalid span)."""
    if tracing_off():
        for field in _propagated_fields():
            if field in headers:
                break
        else:
            return _NO_SPAN
    return tracer.start_as_current_span(name, context=propagate.extract(headers), kind=trace.SpanKind.SERVER)


_NO_SPAN = nullcontext(trace.INVALID_SPAN)  # reusable: it holds nothing but the span it hands out


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

        # Labelled children, kept: `labels()` takes a lock and builds a key on every call (a few per request).
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, route: str, code: int, seconds: float, exemplar: Mapping[str, str] | None) -> None:
        self._child(self.requests, route, str(code)).inc(exemplar=dict(exemplar) if exemplar else None)
        self._child(self.request_seconds, route).observe(seconds, exemplar=dict(exemplar) if exemplar else None)

    def observe_source(self, source: str, status: str, seconds: float) -> None:
        self._child(self.source_seconds, source, status).observe(seconds)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """OpenMetrics (with exemplars) when the scraper asks for it, else the text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _JsonFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the last second formatted (one access-log line per request)

    def _ts(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self._ts(record),
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
        return _encoded(body)

    def access_line(self, created: float, method: str, route: str, status: int, ms: float,
                    exemplar: Mapping[str, str] | EllipsisType | None = ...) -> str:
        """`format` of the access log's record (`log_access`), from its fields: the same text. `exemplar`: what
        `current_exemplar()` gives here, when the caller has it already (the middleware asks once per request)."""
        msecs = (created - int(created)) * 1000  # as LogRecord.__init__ computes it
        second = int(created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        body: dict[str, Any] = {"ts": f"{self._second[1]}.{int(msecs):03d}Z", "level": "info", "logger": _ACCESS,
                                "msg": "%s %s %d" % (method, route, status)}  # noqa: UP031 - as LogRecord.getMessage
        if exemplar is ...:
            exemplar = current_exemplar()
        if exemplar:
            body.update(exemplar)
        body["method"], body["route"], body["status"], body["ms"] = method, route, status, ms
        return _encoded(body)


def _encoded(body: dict[str, Any]) -> str:
    try:
        return orjson.dumps(body, default=str).decode()
    except orjson.JSONEncodeError:  # a lone surrogate in a message: the standard encoder writes it escaped
        return json.dumps(body, default=str)


_ACCESS = "correlator.access"
access_log = logging.getLogger(_ACCESS)
_ours: logging.StreamHandler[Any] | None = None  # the handler configure_logging installed on the root logger


def log_access(method: str, route: str, status: int, seconds: float, exemplar: Mapping[str, str] | EllipsisType | None = ...) -> None:
    """One access-log line: `access_log.info("%s %s %d", …, extra={method, route, status, ms})`.

    When the logging set-up is exactly the one `configure_logging` made (`correlator serve`: our JSON handler
    alone on the root, nothing on the way, no filter), the line is formatted and written here, under the
    handler's lock, without a LogRecord and the walk through the loggers: the same text to the same stream,
    at a third of the cost (bench P3, docs/performance-p3.md "Session 8"). Any other set-up (tests' caplog, an
    embedding app's handlers or filters) takes the logging module's own path. `exemplar`: `current_exemplar()` as the
    caller found it in this same context (the middleware's, shared with the metrics), else it is asked here."""
    ms = round(seconds * 1000, 3)
    handler = _ours
    root = logging.root
    if (handler is None or not access_log.isEnabledFor(logging.INFO) or root.handlers != [handler] or access_log.disabled
            or access_log.handlers or access_log.filters or not access_log.propagate
            or logging.getLogRecordFactory() is not logging.LogRecord
            or handler.filters or handler.level > logging.INFO or not _between_quiet()):
        access_log.info("%s %s %d", method, route, status, extra={"method": method, "route": route, "status": status, "ms": ms})
        return
    formatter = handler.formatter
    assert isinstance(formatter, _JsonFormatter)
    line = formatter.access_line(time.time(), method, route, status, ms, exemplar)
    with handler.lock:  # type: ignore[union-attr]  # as Handler.handle
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:
            handler.handleError(logging.makeLogRecord({"name": _ACCESS, "msg": line}))


def _between_quiet() -> bool:
    """No logger between `correlator.access` and the root has a handler or a filter, and all propagate."""
    logger = access_log.parent
    while logger is not None and logger is not logging.root:
        if logger.handlers or logger.filters or not logger.propagate:
            return False
        logger = logger.parent
    return not logging.root.filters


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr; called once by `correlator serve`, never at import."""
    global _ours
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _ours = handler
    root.setLevel(level)
    # Nothing we write needs the caller's file and line, the thread or the process (the logging HOWTO's
    # "Optimization"): each lookup is paid on every access-log line (bench P3).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # httpx logs every request at INFO: four lines per correlation that say nothing a failure
    # report doesn't (and cost 4 % of the server's CPU under load, bench P3).
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
