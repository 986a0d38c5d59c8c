"""`GET /investigate` as a page, for browsers: the same body the API answers, in the correlation
page's style (autoescaped template, no inline script, the page's CSP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from correlator.config import Settings
from correlator.web.pages import html_response, render

__all__ = ["investigation_page"]


def _local(link: str) -> str:
    """A /correlate link as a path on this server (the body's links carry server.public_url)."""
    at = link.find("/correlate/")
    return link[at:] if at >= 0 else link


def investigation_page(settings: Settings, body: Mapping[str, Any]) -> web.Response:
    suspects = [{**s, "evidence": [{**e, "href": _local(e["correlate"])} for e in s["evidence"]]} for s in body["suspects"]]
    traces = [{**t, "href": _local(t["correlate"])} for t in body["traces"]]
    page = {**body, "suspects": suspects}
    return html_response(render("investigation.html", home_query=settings.prometheus.slow_requests_selector,
                                body=page, traces=traces, tips=body.get("try") or []))
