"""/investigate as a page for browsers: the same verdict as the JSON, escaped, under the page's CSP."""

from __future__ import annotations

import re
from typing import Any

import httpx
from aiohttp.test_utils import TestClient

from correlator.api import create_app
from correlator.config import load_settings
from tests.apiclient import TRACE, Backends

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
HOSTILE = 'http_server_duration_seconds_bucket{route="<script>alert(1)</script>"}'


async def client(aiohttp_client: Any, backends: Backends) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(load_settings(environ={}), backends.transports()))


async def test_a_browser_gets_the_investigation_as_a_page(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client, Backends())
    params = {"query": HOSTILE, "start": "1795572400", "end": "1795572600"}
    body = await (await api.get("/investigate", params=params)).json()
    page = await api.get("/investigate", params=params, headers=BROWSER)
    assert page.status == 200 and page.content_type == "text/html"
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert all('src="/static/' in tag for tag in re.findall(r"<script[^>]*>", html))  # no inline script
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the query, escaped
    verdict = body["summary"]["message"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert verdict in html.replace("&#39;", "'").replace("&#34;", '"')
    assert f'href="/correlate/{TRACE}?start=' in html  # each trace links to its own page on this server


async def test_an_empty_window_page_says_what_to_try(aiohttp_client: Any) -> None:
    backends = Backends()
    backends.prometheus = lambda r: httpx.Response(200, json={"status": "success", "data": []})
    api = await client(aiohttp_client, backends)
    page = await api.get("/investigate", params={"query": "x_bucket", "format": "html"})
    html = await page.text()
    assert page.status == 200 and "no exemplars in that window" in html and "widen the window" in html


async def test_the_exemplars_page_offers_to_investigate_its_series(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client, Backends())
    html = await (await api.get("/exemplars", params={"query": "x_bucket"}, headers=BROWSER)).text()
    assert 'formaction="/investigate"' in html


async def test_the_correlation_says_where_the_trace_stands_in_json_text_and_page(aiohttp_client: Any) -> None:
    backends = Backends()
    exemplars = backends.prometheus
    asked: list[str] = []

    def prometheus(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/v1/query":
            return exemplars(request)
        asked.append(request.url.params["query"])
        buckets = [("0.1", 50), ("0.25", 90), ("0.5", 97), ("+Inf", 100)]  # the exemplar: 0.145 s in (0.1, 0.25]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"le": le}, "value": [1795572655.2, str(n)]} for le, n in buckets]}})

    backends.prometheus = prometheus
    api = await client(aiohttp_client, backends)
    body = await (await api.get(f"/correlate/{TRACE}")).json()
    assert asked == ['sum by (le) (increase({__name__="http_server_duration_seconds_bucket",service="api-gateway"}[5m]))']
    standing = body["standing"]
    assert standing["known"] and standing["bucket"] == "(0.1, 0.25]" and standing["faster_share"] == 0.62  # 50 + 0.3 × 40
    assert standing["message"].startswith('slower than ~62% of http_server_duration_seconds{service="api-gateway"} between ')
    assert body["exemplars"][0]["standing"]["faster_share"] == 0.62
    text = await (await api.get(f"/correlate/{TRACE}", params={"format": "text"})).text()
    assert f"Where it stands: {standing['message']}" in text
    html = await (await api.get(f"/correlate/{TRACE}", headers=BROWSER)).text()
    assert "<dt>where it stands</dt><dd>slower than ~62% of http_server_duration_seconds{service=&#34;api-gateway&#34;}" in html
    assert len(asked) == 1  # settled long ago: the standing was cached with the trace
