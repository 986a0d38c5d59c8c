"""The page in a real browser (Debian's chromium), backends behind mock transports: what a user can
do with it, and that nothing a backend says can run as script. The page over the real Jaeger and
Prometheus: tests/integration/test_page.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from correlator.api import create_app
from correlator.config import load_settings
from tests.apiclient import T0, TRACE, Backends, otlp_trace
from tests.browser import ready, watch

XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)"]
DB = "b7ad6b7169203331"
GATEWAY = "00f067aa0ba902b7"


def hostile_backends() -> Backends:
    """Every backend answering with markup and script in every field users' programs write."""
    backends = Backends()

    def jaeger(_request: httpx.Request) -> httpx.Response:
        trace = otlp_trace()
        db = trace["result"]["resourceSpans"][2]["scopeSpans"][0]["spans"][1]
        db["name"] = XSS[0]
        db["attributes"] = [{"key": f"attr{i}", "value": {"stringValue": v}} for i, v in enumerate(XSS)]
        db["events"] = [{"name": XSS[1], "timeUnixNano": str(T0 + 30_000_000),
                         "attributes": [{"key": "exception.message", "value": {"stringValue": XSS[0]}}]}]
        db["status"] = {"code": 2, "message": XSS[1]}
        return httpx.Response(200, json=trace)

    def loki(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ready":
            return httpx.Response(200, text="ready\n")
        values = [[str(T0 + (30 + i) * 1_000_000), f"{text} trace_id={TRACE} span_id={DB}"] for i, text in enumerate(XSS)]
        values.append([str(T0 + 200_000_000), f"{XSS[1]} trace_id={TRACE}"])  # after the trace: no span owns it
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "streams", "result": [
            {"stream": {"service_name": "course-service", "level": XSS[1]}, "values": values}]}})

    def prometheus(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": [{
            "seriesLabels": {"__name__": "http_server_duration_seconds_bucket", "service": XSS[1], "le": XSS[0]},
            "exemplars": [{"labels": {"trace_id": TRACE, "span_id": GATEWAY}, "value": "0.145", "timestamp": 1795572505.198}]}]})

    backends.jaeger, backends.loki, backends.prometheus = jaeger, loki, prometheus
    return backends


async def serve(aiohttp_server: Any, backends: Backends, **env: str) -> str:
    settings = load_settings(environ={"CORRELATOR_JAEGER_UI_URL": "http://jaeger.example:16686", **env})
    server = await aiohttp_server(create_app(settings, backends.transports()))
    return f"http://127.0.0.1:{server.port}"


async def test_nothing_a_backend_says_runs_as_script(aiohttp_server: Any, browser: Any) -> None:
    base = await serve(aiohttp_server, hostile_backends())
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    for button in await page.query_selector_all("#wf .op"):  # open every span's detail
        await button.click()
    row = page.locator(f"#s-{DB}")
    text = await row.inner_text()
    for value in XSS:  # span name, attributes, log lines: shown as the text they are
        assert value in text, value
    assert XSS[1] in await page.locator(".unplaced").inner_text()
    assert await page.locator("img").count() == 0
    assert await page.locator("a[href^='javascript:'], [onerror], [onclick]").count() == 0
    await page.locator(".fd").first.click()  # a finding quoting the span's name
    assert problems == [], problems


async def test_a_span_opens_to_its_logs_events_attributes_and_exemplars(aiohttp_server: Any, browser: Any) -> None:
    base = await serve(aiohttp_server, hostile_backends())
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    detail = page.locator(f"#s-{DB} .det")
    assert await detail.count() == 0  # built when opened
    await page.locator(f"#s-{DB} .op").press("Enter")  # keyboard reachable
    await detail.wait_for()
    assert [await h.inner_text() for h in await detail.locator("h4").all()] == ["Attributes", "Events", "Log lines"]
    logs = detail.locator("ul.logs li")
    assert await logs.count() == 3
    assert await logs.first.locator("time").inner_text() == "+30 ms"  # relative to the trace's start
    assert await logs.first.locator(".m").inner_text() == "span_id"
    assert "exception.message" in await detail.locator("ul.events").inner_text()
    await page.locator(f"#s-{DB} .op").press("Enter")
    assert await detail.is_hidden()
    await page.locator(f"#s-{GATEWAY} .op").click()
    exemplar = page.locator(f"#s-{GATEWAY} .det table.ex tbody tr")
    assert await exemplar.count() == 1 and "0.145" in await exemplar.inner_text()
    assert await page.locator(f"#s-{GATEWAY} .det a", has_text="in Jaeger").get_attribute("href") == (
        f"http://jaeger.example:16686/trace/{TRACE}?uiFind={GATEWAY}")
    assert problems == [], problems


async def test_collapsed_subtrees_open_for_a_finding(aiohttp_server: Any, browser: Any) -> None:
    """A big trace starts closed below some depth; clicking a finding opens the way to its spans."""
    base = await serve(aiohttp_server, Backends(), CORRELATOR_WEB_VISIBLE_ROWS="2")
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    assert await page.locator(f"#s-{DB}").count() == 0  # under a closed subtree: not drawn
    assert "start closed" in await page.locator("#wf-note").inner_text()
    await page.locator(".fd", has_text="bottleneck").click()
    db = page.locator(f"#s-{DB}")
    await db.wait_for()
    assert "hl" in (await db.get_attribute("class") or "").split()
    assert await db.is_visible() and await db.locator(".bd.k-bottleneck").count() == 1
    course = page.locator("#s-53995c3f42cd8ad8 .tw")
    assert await course.get_attribute("aria-expanded") == "true"
    await course.click()  # close it again: its children go
    assert await page.locator(f"#s-{DB}").count() == 0 and await course.get_attribute("aria-expanded") == "false"
    assert problems == [], problems


async def test_repeated_calls_fold_into_one_row(aiohttp_server: Any, browser: Any) -> None:
    backends = Backends()

    def jaeger(_request: httpx.Request) -> httpx.Response:
        trace = otlp_trace()
        spans = trace["result"]["resourceSpans"][2]["scopeSpans"][0]["spans"]
        for i in range(6):  # an N+1: the same statement with other literals
            spans.append({"traceId": TRACE, "spanId": f"{0xd00 + i:016x}", "parentSpanId": "53995c3f42cd8ad8", "kind": 3,
                          "name": "SELECT lessons", "startTimeUnixNano": str(T0 + (112 + 4 * i) * 1_000_000),
                          "endTimeUnixNano": str(T0 + (115 + 4 * i) * 1_000_000), "status": {},
                          "attributes": [{"key": "db.statement", "value": {"stringValue": f"SELECT * FROM lessons WHERE id = {i}"}}]})
        return httpx.Response(200, json=trace)

    backends.jaeger = jaeger
    base = await serve(aiohttp_server, backends)
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    group = page.locator("#wf .grp .gt")
    assert await group.count() == 1 and "6 × course-service SELECT lessons" in await group.inner_text()
    assert await page.locator("#wf .sp").count() == 5  # the six calls behind one row
    await group.click()
    assert await page.locator("#wf .sp").count() == 11 and await group.get_attribute("aria-expanded") == "true"
    await group.click()
    assert await page.locator("#wf .sp").count() == 5
    assert problems == [], problems


async def test_copy_button_and_the_other_pages_have_no_errors(aiohttp_server: Any, browser: Any) -> None:
    base = await serve(aiohttp_server, Backends(), CORRELATOR_SERVER_AUTH_TOKEN="s3cret-token-0123456789")
    context = await browser.new_context()
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")  # not signed in: the form, then back to the page
    await page.fill("#token", "s3cret-token-0123456789")
    await page.press("#token", "Enter")
    await page.wait_for_url(f"{base}/correlate/{TRACE}")
    await ready(page)
    await page.click("#copy")
    assert await page.evaluate("navigator.clipboard.readText()") == TRACE
    for path in ("/", "/exemplars?query=http_server_duration_seconds_bucket", "/correlate/nothex", "/open?trace_id=zz"):
        await page.goto(f"{base}{path}")
        await ready(page)
    # Only Chromium's own note on the two 400 documents asked for; nothing from the pages themselves.
    expected = ["Failed to load resource: the server responded with a status of 400 (Bad Request)"] * 2
    assert [p.removeprefix("console error: ") for p in problems] == expected, problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_both_colour_schemes_render(aiohttp_server: Any, browser: Any, scheme: str) -> None:
    base = await serve(aiohttp_server, Backends())
    page = await browser.new_page(color_scheme=scheme, viewport={"width": 1280, "height": 800})
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(255, 255, 255)") is (scheme == "light"), background
    # Nothing wider than the window at 1280 px.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1280


async def test_lines_without_a_trace_id_show_under_their_span_as_inferred(aiohttp_server: Any, browser: Any) -> None:
    """The join's inferred lines (no trace ID, placed by service and time) sit apart from the trace's own."""
    from tests.fakes.loki import Entry, make_fake_loki_app, recorded_entries

    extra = [Entry(T0 + 50 * 1_000_000, 'level=error msg="pool exhausted"', {"service_name": "course-service"})]
    loki = await aiohttp_server(make_fake_loki_app(tenants={"t": [*recorded_entries(), *extra]}))
    backends = Backends()
    settings = load_settings(environ={"CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}", "CORRELATOR_LOKI_TENANT": "t"})
    server = await aiohttp_server(create_app(settings, {k: v for k, v in backends.transports().items() if k != "loki"}))
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"http://127.0.0.1:{server.port}/correlate/{TRACE}")
    await ready(page)
    row = page.locator(f"#s-{DB}")
    assert await row.locator(".lc").inner_text() == "2 logs + 1 inferred"
    await row.locator(".op").click()
    headings = [await h.inner_text() for h in await row.locator(".det h4").all()]
    assert headings[-2:] == ["Log lines", "Log lines without a trace ID (inferred by time)"]
    inferred = row.locator(".det ul.logs").last.locator("li")
    assert await inferred.count() == 1
    assert await inferred.locator(".m").inner_text() == "inferred (high)"
    assert await inferred.locator(".line").inner_text() == 'level=error msg="pool exhausted"'
    assert "+ 1 inferred" in await page.locator(".facts").inner_text()
    assert problems == [], problems
