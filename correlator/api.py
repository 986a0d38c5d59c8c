"""The HTTP API: routes, problem+json errors, auth, probes, metrics, OpenAPI.

Thin by design: parse and validate input (400 before any backend call), hand the work to
`Correlator`, render. Every error leaves through one middleware as RFC 9457
`application/problem+json`, with no stack trace and no backend URL or credential in it.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

from correlator import __version__, scratch
from correlator.bulkhead import Overloaded
from correlator.config import Settings
from correlator.correlate import Correlator, Outcome
from correlator.errors import InvalidInput, ShuttingDown, SourceError
from correlator.file_answer import FileAnswer
from correlator.ids import parse_trace_id
from correlator.logfields import extract_trace_context
from correlator.mcp_mount import mount_mcp
from correlator.offload import Offloader
from correlator.openapi import OPENAPI
from correlator.render import correlation_body
from correlator.report import render_text
from correlator.sources._http import make_client
from correlator.sources.jaeger import JaegerSource
from correlator.sources.loki import LokiSource
from correlator.sources.prometheus import PrometheusSource
from correlator.standing_run import StandingLookup, add_standings
from correlator.telemetry import Metrics, current_exemplar, log_access, server_span
from correlator.timeparams import parse_window
from correlator.web import routes as web_routes

__all__ = ["Backends", "create_app"]

log = logging.getLogger(__name__)

_OPEN_ROUTES = frozenset({"/healthz", "/readyz"})
_MAX_LOG_LINE_BYTES = 64 * 1024
_MAX_TARGET_BYTES = 16 * 1024  # longer request targets get 414; the parser accepts up to _PARSER_LINE_BYTES to say so
_PARSER_LINE_BYTES = 1024 * 1024
_ROUTES = "/correlate/{trace_id}, POST /correlate/from-log, /exemplars, /investigate, /healthz, /readyz, /metrics, /openapi.json"


@dataclass(slots=True)
class Backends:
    jaeger: JaegerSource
    loki: LokiSource
    prometheus: PrometheusSource
    correlator: Correlator


BACKENDS = web.AppKey("backends", Backends)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
STANDINGS = web.AppKey("standings", StandingLookup)

Transports = dict[str, httpx.AsyncBaseTransport]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_dumps(body), status=status, content_type="application/json", headers=headers)


def _dumps(body: Any) -> bytes:
    """orjson, with OPT_NON_STR_KEYS only when a key needs it: the option doubles the cost of every
    body (a 20-span correlation: 64 → 119 µs, bench P3), and with str keys the bytes are the same."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/problem+json")


@functools.lru_cache(maxsize=256)
def _route_name(resource: AbstractResource | None) -> str:
    """The route template a request matched, as metrics and the access log name it (once per route)."""
    return resource.canonical.replace("{trace_id:[^/]*}", "{trace_id}") if resource else "unmatched"


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route_name(request.match_info.route.resource)
    response: web.StreamResponse
    with server_span(f"{request.method} {route}", request.headers) as span:
        try:
            if len(request.raw_path) > _MAX_TARGET_BYTES:
                # Never echo the target back: it is arbitrary bytes from the client.
                response = problem(414, "URI too long", f"the request target is longer than {_MAX_TARGET_BYTES} bytes; "
                                   "a trace ID is at most 32 hex digits")
            else:
                response = await _authorise(request, handler)
        except InvalidInput as exc:
            response = problem(400, "Invalid input", exc.message, param=exc.param)
        except Overloaded as exc:  # a backend's bulkhead is full: refuse now rather than queue without end
            response = problem(503, "Overloaded", f"too many correlations in flight ({exc}); retry later",
                               source=exc.source)
            response.headers["Retry-After"] = str(exc.retry_after)
        except ShuttingDown:  # the service is closing: another instance (or this one restarted) answers a retry
            response = problem(503, "Shutting down", "this correlator is shutting down; retry later")
            response.headers["Retry-After"] = str(request.app[SETTINGS].server.retry_after_seconds)
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            response = problem(405, "Method not allowed", f"{request.path[:200]} answers {allowed}, not {exc.method}")
            response.headers["Allow"] = allowed
        except web.HTTPNotFound:
            response = problem(404, "No such route", f"nothing is served at this path; the routes are {_ROUTES}")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = problem(exc.status, exc.reason, exc.text or exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error on %s", route)
            response = problem(500, "Internal error", "the correlator failed; the error is in its own logs")
        response = web_routes.browser_problem(request, response)
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", response.status)
        seconds = time.perf_counter() - started
        exemplar = current_exemplar()  # once for both: the same span is current for each
        request.app[METRICS].observe_request(route, response.status, seconds, exemplar)
        if request.app[SETTINGS].server.access_log:
            # One JSON line per request (telemetry's formatter adds our own trace_id/span_id when traced).
            log_access(request.method, route, response.status, seconds, exemplar)
    return response


async def _authorise(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    token = request.app[SETTINGS].server.auth_token
    if token and request.path not in _OPEN_ROUTES and not request.path.startswith(web_routes.OPEN_PREFIXES):
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        # compare_digest: the time taken must not reveal how much of the token matched.
        bearer_ok = scheme.lower() == "bearer" and hmac.compare_digest(credential.encode(), token.encode())
        if not bearer_ok and not web_routes.authorised_by_cookie(request, token):
            return web.Response(
                body=orjson.dumps({"type": "about:blank", "title": "Unauthorized", "status": 401,
                                   "detail": "a valid bearer token is required"}),
                status=401, content_type="application/problem+json",
                headers={"WWW-Authenticate": 'Bearer realm="correlator"'},
            )
    return await handler(request)


def _tenant(request: web.Request) -> str | None:
    if not request.app[SETTINGS].server.forward_tenant:
        return None
    tenant = request.headers.get("X-Scope-OrgID")
    if tenant is not None and (not tenant or len(tenant) > 150 or not tenant.isprintable()):
        raise InvalidInput("X-Scope-OrgID", "must be 1-150 printable characters")
    return tenant


async def _respond(request: web.Request, outcome: Outcome, started: float) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if outcome.cached:
        request.app[METRICS].cache_hits.inc()
    else:
        for name, report in outcome.correlation.sources.items():
            request.app[METRICS].observe_source(name, report.status.value, report.ms / 1000)
    if outcome.prerendered is not None:  # a big trace, rendered in the worker process (offload.py)
        done = outcome.prerendered
        if request.query.get("format") == "text" and done.status != 404:
            return web.Response(text=done.text, status=done.status, content_type="text/plain")
        if done.html_path is not None and web_routes.wants_html_request(request):
            return FileAnswer(done.html_path, [(0, done.html_size)], status=done.status, content_type="text/html",
                              charset="utf-8")
        if done.status == 404:  # a small problem+json, as bytes: a browser gets it as a page (browser_problem)
            return web.Response(body=done.json_body(False), status=404, content_type="application/problem+json")
        # Sent by the kernel from the worker's file, in a thread: as bytes it would cost the service 34 MB at
        # 100k spans, and through aiohttp's writer ~75 ms of the event loop's CPU (bench P8, file_answer.py).
        return FileAnswer(done.path, done.json_pieces(outcome.cached), status=done.status, content_type="application/json")
    body = correlation_body(outcome, settings, spans_as_json=True, lines_as_json=True)  # only written out: spans and lines as orjson's bytes
    # Where this trace stands in its series (one Prometheus query per exemplar series, cached).
    left = settings.deadline_seconds - (time.monotonic() - started)  # the request's one deadline
    standings = await request.app[STANDINGS].lookup(request.app[BACKENDS].prometheus, outcome.correlation, _tenant(request),
                                                    left)
    add_standings(body, outcome.correlation, standings)
    status = outcome.http_status
    if request.query.get("format") == "text":
        return web.Response(text=render_text(outcome, body), status=status, content_type="text/plain")
    if status != 404 and web_routes.wants_html_request(request):
        return web_routes.correlation_page(request, outcome, body)
    if status == 404:
        return web.Response(
            body=orjson.dumps({"type": "about:blank", "title": "Trace not found", "status": 404,
                               "detail": f"no source knows trace {body['trace_id']}", "sources": body["sources"]}),
            status=404, content_type="application/problem+json",
        )
    return _json(body, status)


async def correlate_handler(request: web.Request) -> web.StreamResponse:
    trace_id = parse_trace_id(request.match_info["trace_id"])
    hint = parse_window(request.query.get("start"), request.query.get("end"))
    if request.query.get("format") not in (None, "json", "text", "html"):
        raise InvalidInput("format", "must be json, text or html")
    started = time.monotonic()
    outcome = await request.app[BACKENDS].correlator.correlate(trace_id, hint, _tenant(request))
    return await _respond(request, outcome, started)


async def from_log_handler(request: web.Request) -> web.StreamResponse:
    raw = await request.content.read(_MAX_LOG_LINE_BYTES + 1)
    if len(raw) > _MAX_LOG_LINE_BYTES:
        raise InvalidInput("body", f"a log line is at most {_MAX_LOG_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body", "must be UTF-8 text") from None
    line, metadata = text, None
    from_form = request.content_type == "application/x-www-form-urlencoded"
    if from_form:  # the home page's log-line box
        line = parse_qs(text).get("line", [""])[0]
    elif request.content_type == "application/json":
        try:
            wrapper = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidInput("body", "is declared JSON but does not parse") from None
        if isinstance(wrapper, dict) and isinstance(wrapper.get("line"), str):
            line = wrapper["line"]
            meta = wrapper.get("metadata")
            metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else None
    if not line.strip():
        raise InvalidInput("body", "send the raw log line (text, logfmt or JSON) as the body")
    settings = request.app[SETTINGS]
    context = extract_trace_context(line, settings.loki, metadata)
    if context.trace_id is None:
        return problem(422, "No trace ID in this line",
                       "none of the configured fields or patterns found a trace ID "
                       f"(fields: {', '.join(settings.loki.trace_id_fields)}; "
                       f"JSONPaths: {', '.join(settings.loki.trace_id_jsonpaths)})")
    hint = parse_window(request.query.get("start"), request.query.get("end"))
    trace_id = replace(parse_trace_id(context.trace_id), lower64_only=context.lower64_only)
    if from_form and not trace_id.lower64_only and web_routes.wants_html_request(request):
        raise web.HTTPSeeOther(f"/correlate/{trace_id.hex}")  # a browser: to the trace's own page (a URL to share)
    started = time.monotonic()
    outcome = await request.app[BACKENDS].correlator.correlate_lower64(trace_id, hint, _tenant(request))
    return await _respond(request, outcome, started)


async def exemplars_handler(request: web.Request) -> web.StreamResponse:
    query = request.query.get("query", "").strip()
    if not query:
        raise InvalidInput("query", "a PromQL selector is required, e.g. http_server_duration_seconds_bucket")
    if len(query) > 4096:
        raise InvalidInput("query", "at most 4096 characters")
    window = parse_window(request.query.get("start"), request.query.get("end"))
    settings = request.app[SETTINGS]
    source = request.app[BACKENDS].prometheus
    try:
        async with asyncio.timeout(settings.source_deadline(settings.prometheus)):
            found = await source.search(query, window.start_ns if window else None, window.end_ns if window else None)
    except TimeoutError:
        return problem(504, "Prometheus did not answer in time", f"no answer within {settings.deadline_seconds}s")
    except SourceError as exc:
        status = 400 if getattr(exc, "status_code", None) == 400 else 502
        return problem(status, "Prometheus refused the query" if status == 400 else "Prometheus failed", exc.message)
    base = settings.server.public_url.rstrip("/")
    items = []
    for ex in found:
        items.append({
            "trace_id": ex.trace_id, "span_id": ex.span_id, "metric": ex.metric, "series": dict(ex.series),
            "value": ex.value if ex.value == ex.value and abs(ex.value) != float("inf") else str(ex.value),
            "timestamp_ns": ex.timestamp_ns,
            "correlate": f"{base}/correlate/{ex.trace_id}?start={ex.timestamp_ns}&end={ex.timestamp_ns}",
        })
    if web_routes.wants_html_request(request):
        return web_routes.exemplars_page(request, query, found)
    return _json({"query": query, "count": len(items), "exemplars": items})


async def healthz(_request: web.Request) -> web.StreamResponse:
    return _json({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.StreamResponse:
    backends = request.app[BACKENDS]
    budget = min(2.0, request.app[SETTINGS].deadline_seconds)

    async def probe(name: str, check: Callable[[], Awaitable[None]]) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                await check()
            return name, {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 3)}
        except TimeoutError:
            return name, {"status": "timeout", "ms": round((time.perf_counter() - started) * 1000, 3)}
        except SourceError as exc:
            return name, {"status": exc.status, "error": exc.message}

    results = dict(await asyncio.gather(
        probe("jaeger", backends.jaeger.ready), probe("loki", backends.loki.ready),
        probe("prometheus", backends.prometheus.ready),
    ))
    ready = all(r["status"] == "ok" for r in results.values())
    return _json({"status": "ready" if ready else "degraded", "sources": results}, 200 if ready else 503)


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    body, content_type = request.app[METRICS].render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi_handler(_request: web.Request) -> web.StreamResponse:
    return _json(OPENAPI)


def create_app(settings: Settings, transports: Transports | None = None) -> web.Application:
    """The aiohttp application; `transports` lets tests put httpx mock transports under the clients."""
    transports = transports or {}
    app = web.Application(middlewares=[_errors_and_metrics], client_max_size=_MAX_LOG_LINE_BYTES * 2,
                          # A 10 kB garbage ID must reach our handler (400 problem+json), not aiohttp's line limit;
                          # longer targets (up to _PARSER_LINE_BYTES) reach the middleware for a 414 that does not echo them.
                          handler_args={"max_field_size": 16384, "max_line_size": _PARSER_LINE_BYTES})
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[STANDINGS] = StandingLookup(settings)
    web_routes.setup_web(app, settings)

    async def backends_ctx(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            clients = {}
            for name in ("jaeger", "loki", "prometheus"):
                client = make_client(getattr(settings, name), transports.get(name))
                clients[name] = await stack.enter_async_context(client)
            jaeger = JaegerSource(settings.jaeger, clients["jaeger"])
            loki = LokiSource(settings.loki, clients["loki"])
            prometheus = PrometheusSource(settings.prometheus, clients["prometheus"])
            await asyncio.to_thread(scratch.sweep)  # big answers' files a killed correlator left (scratch.py)
            offload = None
            if settings.server.offload_bytes:
                offload = Offloader(settings.server.offload_bytes)
                stack.callback(offload.close)  # the worker process starts with the first big trace
            app[BACKENDS] = Backends(jaeger, loki, prometheus, Correlator(settings, jaeger, loki, prometheus, offload=offload))
            app[BACKENDS].correlator.standings = functools.partial(app[STANDINGS].lookup_parts, prometheus)
            app[STANDINGS].bulkheads = app[BACKENDS].correlator.bulkheads
            # Before the clients close (last in, first out): shared lookups a request left running end with the app.
            stack.push_async_callback(app[STANDINGS].aclose)
            stack.push_async_callback(app[BACKENDS].correlator.aclose)
            yield

    app.cleanup_ctx.append(backends_ctx)
    # Any path segment reaches the handler, so a malformed ID gets a 400 that says why, not a 404.
    app.router.add_get("/correlate/{trace_id:[^/]*}", correlate_handler)
    app.router.add_post("/correlate/from-log", from_log_handler)
    app.router.add_get("/exemplars", exemplars_handler)
    from correlator.investigate_api import investigate_handler  # late: it uses this module's keys

    app.router.add_get("/investigate", investigate_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi_handler)
    mount_mcp(app, settings, lambda: app[BACKENDS])  # MCP streamable HTTP, same token (docs/mcp.md)
    return app
