"""The page's routes on the API's aiohttp app: `/`, `/open`, `/login`, `/static/…`, and the HTML
forms of `/correlate/{id}`, `/exemplars` and problem answers (api.py asks `wants_html`).

Security headers for every answer: a strict Content-Security-Policy on pages (no inline script
or style: everything comes from /static), nosniff everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from correlator.config import Settings
from correlator.correlate import Outcome
from correlator.errors import InvalidInput, SourceError
from correlator.ids import parse_trace_id
from correlator.model import Exemplar
from correlator.timeparams import rfc3339_ns
from correlator.web.auth import COOKIE, cookie_valid, cookie_value, safe_next
from correlator.web.negotiate import wants_html
from correlator.web.pages import html_response, render
from correlator.web.view import render_correlation

__all__ = ["CSP", "OPEN_PREFIXES", "authorised_by_cookie", "browser_problem", "correlation_page", "exemplars_page", "setup_web",
           "wants_html_request"]

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
OPEN_PREFIXES = ("/static/", "/login")  # reachable without the token: the sign-in form and its CSS/JS
_SETTINGS = web.AppKey("web_settings", Settings)


def wants_html_request(request: web.Request) -> bool:
    return wants_html(request.query, request.headers.get("Accept"))


def _page(request: web.Request, template: str, http_status: int = 200, **context: Any) -> web.Response:
    settings = request.app[_SETTINGS]
    return html_response(render(template, home_query=settings.prometheus.slow_requests_selector, **context), http_status)


def correlation_page(request: web.Request, outcome: Outcome, body: Mapping[str, Any]) -> web.Response:
    html = render_correlation(body, outcome, request.app[_SETTINGS])
    return web.Response(body=html, status=outcome.http_status, content_type="text/html", charset="utf-8")


def browser_problem(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """A problem+json answer as a page, for browsers; a 401 sends them to the sign-in form."""
    if response.content_type != "application/problem+json" or not isinstance(response, web.Response):
        return response
    if not wants_html_request(request) and request.path != "/open":  # the home page box: always a browser
        return response
    if response.status == 401:  # to the sign-in form, and back here after it
        return web.Response(status=303, headers={"Location": f"/login?{urlencode({'next': safe_next(request.path_qs)})}"})
    try:
        problem = orjson.loads(response.body) if isinstance(response.body, bytes) else {}
    except orjson.JSONDecodeError:
        problem = {}
    sources = problem.get("sources")
    return _page(request, "problem.html", response.status, status=response.status, title=problem.get("title", "Error"),
                 detail=problem.get("detail", ""), param=problem.get("param"),
                 sources=list(sources.items()) if isinstance(sources, dict) else [])


def _exemplar_rows(found: Sequence[Exemplar], limit: int) -> list[dict[str, Any]]:
    rows = []
    for ex in found[:limit]:
        rows.append({"value": f"{ex.value:g}", "trace_id": ex.trace_id, "metric": ex.metric,
                     "series": [(k, v) for k, v in ex.series.items() if k != "__name__"],
                     "time": rfc3339_ns(ex.timestamp_ns)[:23].replace("T", " "),
                     "href": f"/correlate/{ex.trace_id}?start={ex.timestamp_ns}&end={ex.timestamp_ns}"})
    return rows


def exemplars_page(request: web.Request, query: str, found: Sequence[Exemplar]) -> web.Response:
    return _page(request, "exemplars.html", heading="Exemplars: metric → traces", form_action="/exemplars", query=query,
                 exemplars=_exemplar_rows(found, len(found)), error=None, window=None)


async def _home(request: web.Request) -> web.StreamResponse:
    """Paste a trace ID or a log line; below, the slowest recent requests (prometheus.slow_requests_selector)."""
    from correlator.api import (
        BACKENDS,  # the API module registers us: import at call time
    )

    settings = request.app[_SETTINGS]
    query = request.query.get("query", "").strip() or settings.prometheus.slow_requests_selector
    if len(query) > 4096:
        raise InvalidInput("query", "at most 4096 characters")
    end_ns = time.time_ns()
    start_ns = end_ns - int(settings.web.home_lookback_seconds * 1e9)
    error, found = None, []
    try:
        async with asyncio.timeout(settings.source_deadline(settings.prometheus)):
            found = await request.app[BACKENDS].prometheus.search(query, start_ns, end_ns)
    except TimeoutError:
        error = f"no answer within {settings.source_deadline(settings.prometheus)} s"
    except SourceError as exc:
        error = exc.message
    slowest: dict[str, Exemplar] = {}
    for ex in found:  # one row per trace, its slowest exemplar, slowest first (as `correlator slow`)
        if ex.trace_id not in slowest or ex.value > slowest[ex.trace_id].value:
            slowest[ex.trace_id] = ex
    found = sorted(slowest.values(), key=lambda ex: -ex.value if ex.value == ex.value else 0.0)
    minutes = settings.web.home_lookback_seconds / 60
    return _page(request, "home.html", heading="Recent slow requests", form_action="/", query=query,
                 exemplars=_exemplar_rows(found, settings.web.home_limit), error=error,
                 window=f"the last {minutes:g} minutes")


async def _open(request: web.Request) -> web.StreamResponse:
    """The home page's trace-ID box: any spelling → the page of the normalised ID."""
    trace_id = parse_trace_id(request.query.get("trace_id", "").strip())
    raise web.HTTPSeeOther(f"/correlate/{trace_id.hex}")


async def _login_form(request: web.Request) -> web.StreamResponse:
    return _page(request, "login.html", next=safe_next(request.query.get("next")), failed=False)


async def _login(request: web.Request) -> web.StreamResponse:
    settings = request.app[_SETTINGS]
    form = await request.post()
    target = safe_next(str(form.get("next", "/")))
    token = settings.server.auth_token
    given = str(form.get("token", ""))
    if not token:
        raise web.HTTPSeeOther(target)
    if not cookie_valid(cookie_value(given), token):
        return _page(request, "login.html", 401, next=target, failed=True)
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, cookie_value(token), httponly=True, samesite="Strict", path="/",
                        secure=request.secure or settings.server.public_url.startswith("https:"))
    raise response


def authorised_by_cookie(request: web.Request, token: str) -> bool:
    return cookie_valid(request.cookies.get(COOKIE), token)


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"


def setup_web(app: web.Application, settings: Settings) -> None:
    app[_SETTINGS] = settings
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _home)
    app.router.add_get("/open", _open)
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login)
    app.router.add_static("/static/", STATIC, append_version=False)
