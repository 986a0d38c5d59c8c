"""A real browser for the page's tests: Debian's chromium driven by Playwright (no browser download).

Each test gets its own browser process (the tests' event loop is per test); `watch` records what a
user would notice went wrong on a page: console errors, uncaught exceptions, dialogs (an alert()
that fires is an XSS hole).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.conftest import skip_or_fail

CHROMIUM = os.environ.get("CORRELATOR_CHROMIUM", "/usr/bin/chromium")


@asynccontextmanager
async def launched() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"no browser at {CHROMIUM} (scripts/test installs Debian's chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            await browser.close()


def watch(page: Any) -> list[str]:
    """Everything that went wrong on `page`, as text; dialogs are dismissed and recorded."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))

    async def dialog(d: Any) -> None:
        problems.append(f"dialog {d.type}: {d.message}")
        await d.dismiss()

    page.on("dialog", dialog)
    return problems


async def ready(page: Any) -> None:
    """The page's script has run (its handlers are attached, the waterfall drawn)."""
    await page.wait_for_selector("html[data-ready='1']", state="attached")
