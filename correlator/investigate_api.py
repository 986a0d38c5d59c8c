"""`GET /investigate`: input checked before any backend call, then `investigate_run.investigate`."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from aiohttp import web

from correlator.api import BACKENDS, SETTINGS, _json, _tenant, problem
from correlator.config import Settings
from correlator.errors import InvalidInput, SourceError, SourceHTTPError, SourceTimeout
from correlator.investigate_render import empty_body, investigation_body, investigation_text
from correlator.investigate_run import Request, investigate
from correlator.model import Window
from correlator.timeparams import MAX_WINDOW_NS, parse_instant
from correlator.web.investigate_page import investigation_page
from correlator.web.negotiate import wants_html

__all__ = ["investigate_handler", "parse_request"]

DEFAULT_LIMIT = 20
_MAX_QUERY = 4096


def parse_request(params: Mapping[str, str], settings: Settings, now_ns: int) -> Request:
    """Pure: the query string → a Request, or InvalidInput naming the parameter."""
    query = params.get("query", "").strip()
    if not query:
        raise InvalidInput("query", "a PromQL selector or histogram expression is required, "
                                    "e.g. http_server_duration_seconds_bucket{route=\"/api/courses\"}")
    if len(query) > _MAX_QUERY:
        raise InvalidInput("query", f"at most {_MAX_QUERY} characters")
    lookback_ns = int(settings.investigate.lookback_seconds * 1e9)
    end_ns = parse_instant("end", params["end"]) if params.get("end") else now_ns
    start_ns = parse_instant("start", params["start"]) if params.get("start") else end_ns - lookback_ns
    if start_ns > end_ns:
        raise InvalidInput("start", "must not be after end")
    if end_ns - start_ns > MAX_WINDOW_NS:
        raise InvalidInput("end", "the window is longer than 31 days; narrow it")
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    cap = settings.investigate.max_traces
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= cap:
        raise InvalidInput("limit", f"must be a whole number in [1, {cap}] (investigate.max_traces)")
    threshold = None
    if params.get("threshold"):
        try:
            threshold = float(params["threshold"])
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold) or threshold <= 0:
            raise InvalidInput("threshold", "must be a positive number in the metric's unit (e.g. 2 for 2 s, 2000 for ms)")
    return Request(query, Window(start_ns, end_ns), int(raw_limit), threshold)


async def investigate_handler(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    wanted = parse_request(request.query, settings, time.time_ns())
    as_text = request.query.get("format") == "text"
    if request.query.get("format") not in (None, "json", "text", "html"):
        raise InvalidInput("format", "must be json, text or html")
    tenant = _tenant(request)
    backends = request.app[BACKENDS]
    try:
        found = await investigate(settings, backends.correlator, backends.prometheus, wanted, tenant)
    except SourceTimeout as exc:
        return problem(504, "Prometheus did not answer in time", exc.message)
    except SourceHTTPError as exc:
        if exc.status_code == 400:  # Prometheus' bad_data: the caller's PromQL
            return problem(400, "Prometheus refused the query", exc.message, param="query")
        return problem(502, "Prometheus failed", exc.message)
    except SourceError as exc:
        return problem(502, "Prometheus failed", exc.message)
    body = investigation_body(found, settings) if found.traces else empty_body(wanted, found.exemplar_count)
    if as_text:
        return web.Response(text=investigation_text(body), content_type="text/plain")
    if wants_html(request.query, request.headers.get("Accept")):
        return investigation_page(settings, body)
    return _json(body)
