"""Shared instrumentation for the Python demo services.

Traces: OpenTelemetry SDK → OTLP/HTTP → Jaeger (OTEL_EXPORTER_OTLP_ENDPOINT), W3C context
propagation across HTTP calls. Logs: one line per event on stdout and over OTLP to Loki
(DEMO_LOKI_OTLP_ENDPOINT, `…/otlp/v1/logs`), the body in the service's own format (JSON or
logfmt) with trace_id/span_id in it, and Loki's OTLP path adds them as structured metadata
too. Metrics: prometheus_client with exemplars {trace_id, span_id} on `_bucket` and
`_total` samples only (Prometheus 2.42 fails a scrape that has them anywhere else).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

REQUESTS_KEY = web.AppKey("telemetry", object)


class Telemetry:
    def __init__(self, service: str, log_format: str) -> None:
        self.service, self.log_format = service, log_format
        resource = Resource.create({"service.name": service})
        provider = TracerProvider(resource=resource)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=2)))
        trace.set_tracer_provider(provider)
        self.tracer = trace.get_tracer(service)
        self.logger = logging.getLogger(service)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        stdout = logging.StreamHandler(sys.stdout)
        stdout.setFormatter(logging.Formatter("%(message)s"))
        self.logger.addHandler(stdout)
        if os.environ.get("DEMO_LOKI_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            logs = LoggerProvider(resource=resource)
            logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
                endpoint=os.environ["DEMO_LOKI_OTLP_ENDPOINT"], timeout=2)))
            self.logger.addHandler(LoggingHandler(logger_provider=logs))
        self.registry = CollectorRegistry()
        self.duration = Histogram("http_server_duration_seconds", "Request latency.", ("service", "route", "status"),
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=self.registry)
        self.requests = Counter("http_requests", "Requests served.", ("service", "route", "status"), registry=self.registry)

    def ids(self) -> dict[str, str]:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return {}
        return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}

    def log(self, level: str, msg: str, **fields: object) -> None:
        """One line in this service's body format, carrying the current trace and span IDs."""
        data = {"level": level, "msg": msg, **fields, **self.ids()}
        if self.log_format == "json":
            line = json.dumps(data)
        else:
            line = " ".join(f'{k}={json.dumps(v) if isinstance(v, str) and (" " in v or not v) else v}' for k, v in data.items())
        self.logger.log(getattr(logging, level.upper(), logging.INFO), line)

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def instrument(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            if request.path in ("/metrics", "/healthz"):
                return await handler(request)
            route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
            started = time.perf_counter()
            with self.tracer.start_as_current_span(f"{request.method} {route}", kind=SpanKind.SERVER,
                                                   context=propagate.extract(request.headers),
                                                   attributes={"http.request.method": request.method, "http.route": route}) as span:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    response = exc
                except Exception as exc:  # the demo's error path: recorded, logged, answered 500
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    self.log("error", f"request failed: {exc}", route=route)
                    response = web.json_response({"error": str(exc)}, status=500)
                span.set_attribute("http.response.status_code", response.status)
                exemplar = self.ids()
                if exemplar:  # W3C Trace Context level 2: tells the caller which trace served it
                    response.headers["traceresponse"] = f"00-{exemplar['trace_id']}-{exemplar['span_id']}-01"
                elapsed = time.perf_counter() - started
                self.duration.labels(self.service, route, str(response.status)).observe(elapsed, exemplar=exemplar or None)
                self.requests.labels(self.service, route, str(response.status)).inc(exemplar=exemplar or None)
            return response

        return instrument

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware()])
        app.router.add_get("/metrics", make_aiohttp_handler(self.registry))
        app.router.add_get("/healthz", lambda _r: _ok())
        return app

    def db(self, statement: str, seconds: float) -> _Db:
        return _Db(self, statement, seconds)


async def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


class _Db:
    """A fake database call: a client span with db.* attributes and a sleep."""

    def __init__(self, telemetry: Telemetry, statement: str, seconds: float) -> None:
        self.t, self.statement, self.seconds = telemetry, statement, seconds

    async def run(self) -> None:
        import asyncio

        name = self.statement.split()[0] + " " + self.statement.split("FROM")[-1].split()[0] if "FROM" in self.statement else "query"
        with self.t.tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes={
                "db.system": "postgresql", "db.statement": self.statement}):
            await asyncio.sleep(self.seconds)


def outgoing_headers() -> dict[str, str]:
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def serve(app: web.Application, default_port: int) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args()
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
