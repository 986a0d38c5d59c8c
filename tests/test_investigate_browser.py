"""The investigation page in a real browser (Debian's chromium): hostile backends cannot run script
through it, and a user gets from the exemplars page to the verdict and on to one trace's page."""

from __future__ import annotations

from typing import Any

from correlator.api import create_app
from correlator.config import load_settings
from tests.apiclient import TRACE
from tests.browser import watch
from tests.test_page_browser import XSS, hostile_backends


async def test_exemplars_to_verdict_to_one_trace_without_anything_running(aiohttp_server: Any, browser: Any) -> None:
    server = await aiohttp_server(create_app(load_settings(environ={}), hostile_backends().transports()))
    base = f"http://127.0.0.1:{server.port}"
    page = await browser.new_page()
    problems = watch(page)
    await page.goto(f"{base}/exemplars?query={XSS[0]}")
    await page.get_by_role("button", name="Investigate").click()
    await page.wait_for_url("**/investigate?query=*")
    verdict = await page.locator(".verdict").inner_text()
    assert "is the bottleneck in 1 of 1 slow traces" in verdict and XSS[0] in verdict  # the span's name, as text
    assert await page.locator("#query").input_value() == XSS[0]
    assert await page.locator("img").count() == 0
    assert await page.locator("a[href^='javascript:'], [onerror], [onclick]").count() == 0
    await page.locator(f"table.ex a[href^='/correlate/{TRACE}']").click()
    await page.wait_for_url(f"**/correlate/{TRACE}?**")
    assert problems == [], problems
