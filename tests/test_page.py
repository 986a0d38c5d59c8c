"""The HTML page over HTTP (no browser): who gets HTML, its headers, escaping, the home page's
redirects, problem pages, and the sign-in cookie. What it looks and behaves like in a browser:
tests/test_page_browser.py and tests/integration/test_page.py."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
from aiohttp.test_utils import TestClient

from correlator.api import create_app
from correlator.config import load_settings
from correlator.web.auth import safe_next
from correlator.web.negotiate import wants_html
from correlator.web.view import embedded_json
from tests.apiclient import TRACE, Backends

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
TOKEN = "s3cret-token-0123456789"


async def client(aiohttp_client: Any, backends: Backends | None = None, **env: str) -> TestClient:  # type: ignore[type-arg]
    settings = load_settings(environ=env)
    return await aiohttp_client(create_app(settings, (backends or Backends()).transports()))


def data_block(html: str) -> Any:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert match, "the page carries its data block"
    return orjson.loads(match.group(1))


@pytest.mark.parametrize(("query", "accept", "html"), [
    ({}, "text/html,application/xhtml+xml,*/*;q=0.8", True),  # a browser
    ({}, "*/*", False),  # curl
    ({}, None, False),
    ({}, "application/json", False),
    ({}, "application/json, text/html;q=0.5", False),
    ({}, "text/html;q=0", False),
    ({"format": "json"}, "text/html", False),  # an explicit format wins
    ({"format": "html"}, "*/*", True),
])
def test_who_gets_html(query: dict[str, str], accept: str | None, html: bool) -> None:
    assert wants_html(query, accept) is html


async def test_a_browser_gets_the_page_and_everyone_else_the_json(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client)
    page = await api.get(f"/correlate/{TRACE}", headers=BROWSER)
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = await page.text()
    # No inline script and no on… handler: everything the CSP allows is /static and the inert data block.
    assert all('src="/static/' in tag or 'type="application/json"' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not [tag for tag in re.findall(r"<[a-zA-Z][^>]*>", html) if re.search(r"\son[a-z]+\s*=", tag)]
    body = data_block(html)["body"]
    as_json = await (await api.get(f"/correlate/{TRACE}")).json()
    assert body["spans"] == as_json["spans"] and body["findings"] == as_json["findings"]
    assert (await api.get(f"/correlate/{TRACE}", headers={"Accept": "*/*"})).content_type == "application/json"
    text = await api.get(f"/correlate/{TRACE}", params={"format": "text"}, headers=BROWSER)
    assert text.content_type == "text/plain"
    bad = await api.get(f"/correlate/{TRACE}", params={"format": "pdf"})
    assert bad.status == 400 and "json, text or html" in (await bad.json())["detail"]


async def test_static_files_are_served_with_nosniff(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client)
    for path, kind in (("/static/page.js", "javascript"), ("/static/page.css", "text/css"), ("/static/favicon.svg", "svg")):
        answer = await api.get(path)
        assert answer.status == 200 and kind in answer.headers["Content-Type"], path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (await api.get("/static/../api.py")).status in (403, 404)


async def test_everything_a_backend_says_is_escaped(aiohttp_client: Any) -> None:
    backends = Backends()
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'

    def jaeger(_request: httpx.Request) -> httpx.Response:
        from tests.apiclient import otlp_trace

        trace = otlp_trace()
        span = trace["result"]["resourceSpans"][2]["scopeSpans"][0]["spans"][1]
        span["name"] = evil  # the DB span: the bottleneck finding quotes its name
        return httpx.Response(200, json=trace)

    backends.jaeger = jaeger
    api = await client(aiohttp_client, backends)
    html = await (await api.get(f"/correlate/{TRACE}", headers=BROWSER)).text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the finding's message, as text
    assert data_block(html)["body"]["spans"][3]["operation"] == evil  # the data block holds it unchanged


def test_the_data_block_cannot_be_closed_by_data() -> None:
    raw = embedded_json({"line": "</script><script>alert(1)</script><!-- & -->"})
    assert b"<" not in raw and b">" not in raw and b"&" not in raw
    assert orjson.loads(raw) == {"line": "</script><script>alert(1)</script><!-- & -->"}


async def test_home_boxes_redirect_to_the_trace_page(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client)
    home = await api.get("/", headers=BROWSER)
    assert home.status == 200 and 'action="/open"' in await home.text()
    opened = await api.get("/open", params={"trace_id": " 00F067AA0BA902B7 "}, allow_redirects=False, headers=BROWSER)
    assert opened.status == 303 and opened.headers["Location"] == "/correlate/000000000000000000f067aa0ba902b7"
    wrong = await api.get("/open", params={"trace_id": "not-an-id"}, headers=BROWSER)
    assert wrong.status == 400 and wrong.content_type == "text/html" and "not a valid trace ID" in await wrong.text()
    line = f'level=info msg="hello" trace_id={TRACE.upper()}'
    posted = await api.post("/correlate/from-log", data={"line": line}, allow_redirects=False, headers=BROWSER)
    assert posted.status == 303 and posted.headers["Location"] == f"/correlate/{TRACE}"
    none = await api.post("/correlate/from-log", data={"line": "no id here"}, headers=BROWSER)
    assert none.status == 422 and "No trace ID" in await none.text()
    api_client = await api.post("/correlate/from-log", data={"line": line})  # a form post from a script: the JSON
    assert api_client.status == 200 and (await api_client.json())["trace_id"] == TRACE


async def test_problems_are_pages_for_browsers_and_json_for_others(aiohttp_client: Any) -> None:
    backends = Backends()
    backends.jaeger = lambda r: httpx.Response(404, json={"error": {"code": 5, "message": "trace not found"}})
    backends.loki = lambda r: httpx.Response(200, json={"status": "success", "data": {"resultType": "streams", "result": []}})
    backends.prometheus = lambda r: httpx.Response(200, json={"status": "success", "data": []})
    api = await client(aiohttp_client, backends)
    page = await api.get(f"/correlate/{TRACE}", headers=BROWSER)
    assert page.status == 404 and page.content_type == "text/html"
    assert "Trace not found" in await page.text() and "jaeger" in await page.text()
    assert (await api.get(f"/correlate/{TRACE}")).content_type == "application/problem+json"
    bad = await api.get("/correlate/xyz", headers=BROWSER)
    assert bad.status == 400 and "not a valid trace ID" in await bad.text()


async def test_exemplars_render_for_browsers(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client)
    page = await api.get("/exemplars", params={"query": "http_server_duration_seconds_bucket"}, headers=BROWSER)
    html = await page.text()
    assert page.status == 200 and f'href="/correlate/{TRACE}?start=' in html
    assert (await api.get("/exemplars", params={"query": "x"})).content_type == "application/json"


async def test_the_token_rule_holds_for_pages_with_a_sign_in_cookie(aiohttp_client: Any) -> None:
    api = await client(aiohttp_client, CORRELATOR_SERVER_AUTH_TOKEN=TOKEN)
    login = await api.get(f"/correlate/{TRACE}", headers=BROWSER)
    assert login.status == 200 and login.url.path == "/login" and 'name="token"' in await login.text()
    assert f'value="/correlate/{TRACE}"' in await login.text()  # back to the page after signing in
    assert (await api.get(f"/correlate/{TRACE}")).status == 401  # the API's answer is unchanged
    assert (await api.get("/static/page.css")).status == 200  # the sign-in form's CSS is public
    wrong = await api.post("/login", data={"token": "wrong-token-0123456789", "next": "/"}, allow_redirects=False)
    assert wrong.status == 401 and "not right" in await wrong.text()
    signed = await api.post("/login", data={"token": TOKEN, "next": f"/correlate/{TRACE}"}, allow_redirects=False)
    assert signed.status == 303 and signed.headers["Location"] == f"/correlate/{TRACE}"
    cookie = signed.cookies["correlator_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and TOKEN not in cookie.value
    page = await api.get(f"/correlate/{TRACE}", headers=BROWSER)  # the client keeps the cookie
    assert page.status == 200 and page.content_type == "text/html"
    api.session.cookie_jar.clear()
    assert (await api.get(f"/correlate/{TRACE}", headers={**BROWSER, "Authorization": f"Bearer {TOKEN}"})).status == 200
    assert (await api.get(f"/correlate/{TRACE}", headers={"Cookie": "correlator_session=forged"})).status == 401


@pytest.mark.parametrize(("target", "expected"), [
    ("/correlate/abc?x=1", "/correlate/abc?x=1"), ("//evil.example/", "/"), ("https://evil.example/", "/"),
    ("/\\evil.example", "/"), ("", "/"), (None, "/"), ("/ok\r\nSet-Cookie: x=1", "/"),
])
def test_sign_in_only_returns_to_this_service(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


async def test_lines_of_a_trace_jaeger_lost_are_all_shown_unplaced(aiohttp_client: Any) -> None:
    backends = Backends()
    backends.jaeger = lambda r: httpx.Response(404, json={"error": {"code": 5, "message": "trace not found"}})
    api = await client(aiohttp_client, backends)
    as_json = await (await api.get(f"/correlate/{TRACE}")).json()
    assert as_json["logs"], "the recorded Loki answer has lines for this trace"
    page = await api.get(f"/correlate/{TRACE}", headers=BROWSER)
    html = await page.text()
    assert page.status == 200 and "Trace not in Jaeger" in html and 'id="wf"' not in html
    assert 'data-source="jaeger"' in html  # the banner: Jaeger did not know it
    unplaced = html.split('<section class="unplaced"', 1)[1]
    assert unplaced.count('<li class="lv-') == len(as_json["logs"])  # every line, none dropped


def test_the_page_ships_inside_the_package() -> None:
    """A non-editable install (the Docker image) has the templates and static files: correlator.web is a
    package setuptools finds, and pyproject's package-data covers every file the page serves."""
    import tomllib
    from fnmatch import fnmatch

    from setuptools import find_packages

    from tests.conftest import REPO

    assert "correlator.web" in find_packages(str(REPO), include=["correlator*"])
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["correlator"]
    served = [p.relative_to(REPO / "correlator").as_posix() for p in (REPO / "correlator" / "web").rglob("*")
              if p.is_file() and p.suffix in (".html", ".js", ".css", ".svg")]
    assert len(served) >= 10 and all(any(fnmatch(name, pattern) for pattern in patterns) for name in served), served


async def test_a_cut_trace_says_on_the_page_and_in_the_text_which_part_went(aiohttp_client: Any) -> None:
    """Over `jaeger.max_spans` the answer keeps the top of the tree; the page's banner and the text say what was dropped."""
    api = await client(aiohttp_client, None, CORRELATOR_JAEGER_MAX_SPANS="2")
    body = await (await api.get(f"/correlate/{TRACE}")).json()
    cut = body["sources"]["jaeger"]["cut"]
    assert body["sources"]["jaeger"]["truncated"] and cut.startswith("kept 2 of ")
    html = await (await api.get(f"/correlate/{TRACE}", headers=BROWSER)).text()
    banner = re.search(r'<div class="banner" role="alert" data-source="jaeger">(.*?)</div>', html, re.S)
    assert banner and "Cut answer — jaeger" in banner.group(1) and "spans are not shown" in banner.group(1)
    text = await (await api.get(f"/correlate/{TRACE}", params={"format": "text"})).text()
    assert f"cut: {cut}" in text
