"""`/mcp`'s app started lazily (correlator/mcp_mount.py): a start that failed is retried from a clean state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from correlator import mcp_mount
from correlator.mcp_mount import ASGIApp, LazyASGI, Receive, Scope, Send


class FirstStartFails:
    """A Starlette app (as the MCP SDK's is) whose lifespan fails its first start — too slow (it would come up after
    the start gave up on it) or raising — and starts at once later. Its one route names the lifespans up right now:
    what the MCP SDK's session manager is to its requests (a request served without it fails)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.attempts = 0
        self.up: set[int] = set()
        self.log: list[str] = []
        self.release_first = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.attempts += 1
        attempt = self.attempts
        if attempt == 1:
            if self.how == "raises":
                raise RuntimeError("the session manager could not start")
            await self.release_first.wait()  # too slow: later than the start waits
        self.up.add(attempt)
        self.log.append(f"up {attempt}")
        try:
            yield
        finally:
            self.up.discard(attempt)
            self.log.append(f"down {attempt}")

    async def build(self) -> ASGIApp:
        async def lifespans_up(_request: Request) -> PlainTextResponse:
            return PlainTextResponse(",".join(map(str, sorted(self.up))))

        starlette = Starlette(routes=[Route("/mcp", lifespans_up)], lifespan=self.lifespan)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan" and self.how == "never-answers" and self.attempts == 0:
                self.attempts += 1
                await receive()
                await asyncio.Event().wait()  # takes its startup and never answers, not even when cancelled
            await starlette(scope, receive, send)

        return app


@pytest.mark.parametrize("how", ["too-slow", "never-answers", "raises"])
async def test_a_retry_after_a_failed_start_starts_alone_from_clean_queues(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first /mcp request's start fails; the next request retries it. The failed attempt's lifespan was left
    running with the same inbox and outbox: once up, it took the retry's startup message as its shutdown and answered
    it, and the retry read that answer — the retry failed and the old lifespan outlived the service; a timed-out start
    also left its reader of the outbox waiting. Now a failed start ends its lifespan and leaves nothing running, and
    the retry has queues of its own."""
    monkeypatch.setattr(mcp_mount, "_LIFESPAN_TIMEOUT_S", 0.05)
    flaky = FirstStartFails(how)
    lazy = LazyASGI(flaky.build)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=lazy), base_url="http://correlator") as client:
        with pytest.raises((TimeoutError, RuntimeError)):
            await client.get("/mcp")
        for _ in range(5):
            await asyncio.sleep(0)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []  # a failed start leaves nothing
        flaky.release_first.set()  # the slow first start would come up now, were it still running
        retried = await client.get("/mcp")
        assert retried.status_code == 200 and retried.text == "2"  # served with the retry's lifespan up, and only it
        await lazy.close()
    assert flaky.log == ["up 2", "down 2"] and flaky.up == set()  # shut down as a lifespan should be; the first never up
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
