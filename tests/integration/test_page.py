"""The page in Debian's chromium over the real Jaeger v2 and Prometheus and the recorded Loki:
the seed trace as a user sees it, findings that lead to their spans, a partial answer that says
so, and the home page's boxes. Set-up as tests/integration/test_end_to_end.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from correlator.api import create_app
from correlator.config import load_settings
from tests.browser import ready, watch
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration.servers import Jaeger, Prometheus, free_port

pytestmark = pytest.mark.integration
SC = scenario()
TRACE = SC["trace_id"]
IDS = SC["span_ids"]


async def serve(aiohttp_server: Any, jaeger: Jaeger, prometheus: Prometheus, t0: int, loki_url: str | None = None) -> str:
    if loki_url is None:
        loki = await aiohttp_server(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))
        loki_url = f"http://127.0.0.1:{loki.port}"
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger.query_url, "CORRELATOR_LOKI_URL": loki_url,
                                      "CORRELATOR_PROMETHEUS_URL": prometheus.url, "CORRELATOR_DEADLINE_SECONDS": "5"})
    server = await aiohttp_server(create_app(settings))
    return f"http://127.0.0.1:{server.port}"


async def test_the_seed_trace_page(aiohttp_server: Any, browser: Any, jaeger: Jaeger, prometheus: Prometheus, t0: int) -> None:
    base = await serve(aiohttp_server, jaeger, prometheus, t0)
    async with httpx.AsyncClient() as http:  # the JSON is what the page must show
        body = (await http.get(f"{base}/correlate/{TRACE}", timeout=10)).json()
    lines = {entry["id"]: entry["line"] for entry in body["logs"]}
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    rows = page.locator("#wf .sp")
    assert await rows.count() == len(IDS) == body["summary"]["span_count"]
    assert await page.locator("#span-count").inner_text() == str(len(IDS))
    assert await page.locator(".banner").count() == 0  # all three sources answered
    db = page.locator(f"#s-{IDS['db']}")
    assert await db.locator(".bd.k-bottleneck").inner_text() == "bottleneck"
    assert "SELECT courses" in await db.locator(".op").inner_text()
    assert await page.locator(".fd").first.locator(".kind").inner_text() == "bottleneck"  # findings first, API order
    for span in body["spans"]:  # each log line under its own span, once the row is open
        row = page.locator(f"#s-{span['span_id']}")
        assert await row.locator(".lc").inner_text() == f"{len(span['log_ids'])} logs"
        await row.locator(".op").click()
        shown = [await line.inner_text() for line in await row.locator(".det ul.logs .line").all()]
        assert shown == [lines[i] for i in span["log_ids"]], span["operation"]
    gateway = page.locator(f"#s-{IDS['gateway']}")
    assert await gateway.locator(".xc").inner_text() == f"{body['summary']['exemplar_count']} ex"
    exemplars = gateway.locator(".det table.ex tbody tr")
    assert await exemplars.count() == body["summary"]["exemplar_count"] >= 1
    assert "http_server_duration_seconds_bucket" in await gateway.locator(".det table.ex").inner_text()
    assert problems == [], problems


async def test_a_finding_scrolls_to_and_highlights_its_spans(aiohttp_server: Any, browser: Any, jaeger: Jaeger,
                                                             prometheus: Prometheus, t0: int) -> None:
    from playwright.async_api import expect  # after the browser fixture: a missing playwright skips (fails in CI) there

    base = await serve(aiohttp_server, jaeger, prometheus, t0)
    page = await browser.new_page(viewport={"width": 1280, "height": 500})  # short: the waterfall starts below the fold
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    db = page.locator(f"#s-{IDS['db']}")
    assert not await db.evaluate("e => e.getBoundingClientRect().bottom <= innerHeight")
    await page.locator(".fd", has_text="bottleneck").click()
    await expect(db).to_be_in_viewport(ratio=1)  # scrolled to (smoothly: polled)
    highlighted = [await row.get_attribute("id") for row in await page.locator("#wf .sp.hl").all()]
    assert highlighted == [f"s-{IDS['db']}"]
    assert await page.evaluate("document.activeElement.closest('.sp').id") == f"s-{IDS['db']}"
    assert problems == [], problems


async def test_loki_down_still_shows_the_trace_and_says_so(aiohttp_server: Any, browser: Any, jaeger: Jaeger,
                                                          prometheus: Prometheus, t0: int) -> None:
    base = await serve(aiohttp_server, jaeger, prometheus, t0, loki_url=f"http://127.0.0.1:{free_port()}")
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/correlate/{TRACE}")
    await ready(page)
    assert await page.locator("#wf .sp").count() == len(IDS)
    banner = page.locator(".banner")
    assert await banner.count() == 1
    text = await banner.inner_text()
    assert "loki" in text and "unavailable" in text and "connect" in text.lower(), text
    assert await page.locator(".sources .st-unavailable").inner_text() != ""
    assert problems == [], problems


async def test_the_home_page_boxes_and_recent_requests(aiohttp_server: Any, browser: Any, jaeger: Jaeger,
                                                      prometheus: Prometheus, t0: int) -> None:
    base = await serve(aiohttp_server, jaeger, prometheus, t0)
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/")
    await ready(page)
    # The trace-ID box takes any spelling.
    await page.fill("#trace-id", f"  {TRACE.upper()} ")
    await page.press("#trace-id", "Enter")
    await page.wait_for_url(f"{base}/correlate/{TRACE}")
    await ready(page)
    assert await page.locator("#wf .sp").count() == len(IDS)
    # The log-line box: a line as Loki holds it → its trace's page.
    await page.goto(f"{base}/")
    await page.fill("#log-line", f'ts=2025-11-25T10:00:00Z level=info msg="token validated" traceID={TRACE} spanID={IDS["auth"]}')
    await page.click("form[action='/correlate/from-log'] button")
    await page.wait_for_url(f"{base}/correlate/{TRACE}")
    await ready(page)
    assert await page.locator(f"#s-{IDS['auth']}").count() == 1
    # Recent slow requests: the real exemplar Prometheus scraped for the seed trace, one click from its page.
    await page.goto(f"{base}/")
    link = page.locator(f".recent-list a[href^='/correlate/{TRACE}']")
    assert await link.count() >= 1
    await link.first.click()
    await page.wait_for_url(f"{base}/correlate/{TRACE}?**")
    await ready(page)
    assert await page.locator("#wf .sp").count() == len(IDS)
    assert problems == [], problems
