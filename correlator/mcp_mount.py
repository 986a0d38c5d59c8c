"""`/mcp` on the service: the MCP SDK's ASGI app behind one aiohttp resource, loaded on first use.

The SDK's streamable HTTP transport is a Starlette app whose session manager lives in an anyio
task group for the app's whole life. `aiohttp-asgi` bridges requests; the lifespan is driven
here, in one task of its own, so the task group is entered and left in the same task.

Loaded lazily: importing the SDK (pydantic, starlette, jsonschema, …) costs each worker ~35 MB
and ~1 s, which a service nobody asks over MCP should not pay. The first /mcp request imports
it in a thread (the event loop keeps serving) and starts it; the others wait for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientRequest, web
from aiohttp_asgi import ASGIResource
from aiohttp_asgi.resource import ASGIMatchInfo

from correlator.config import Settings

__all__ = ["LazyASGI", "mount_mcp"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LIFESPAN_TIMEOUT_S = 10.0


class LazyASGI:
    """An ASGI app built on first call, its lifespan started then and stopped by `close()`."""

    def __init__(self, build: Callable[[], Awaitable[ASGIApp]]) -> None:
        self._build = build
        self._ready: asyncio.Future[ASGIApp] | None = None
        self._lifespan: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed = self._ready is not None and self._ready.done() and (self._ready.cancelled() or self._ready.exception())
        if self._ready is None or failed:  # the first caller starts it (again after a failure); others share that
            self._ready = asyncio.ensure_future(self._start())
        app = await asyncio.shield(self._ready)
        # The SDK's route is /mcp on the full path: the bridge's root_path would make Starlette strip it.
        await app({**scope, "root_path": ""}, receive, send)

    async def _start(self) -> ASGIApp:
        app = await self._build()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        # Each attempt its own queues: nothing a failed attempt's lifespan sent or left unread reaches this one.
        inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._inbox, self._outbox = inbox, outbox
        await inbox.put({"type": "lifespan.startup"})

        async def lifespan() -> None:
            await app(scope, inbox.get, outbox.put)

        self._lifespan = asyncio.create_task(lifespan())
        try:
            answer = await self._reply()
            if answer.get("type") != "lifespan.startup.complete":
                raise RuntimeError(f"the MCP app did not start: {answer.get('message') or answer.get('type')}")
        except BaseException:
            # Too slow, or failed: its lifespan (maybe still starting) is ended here, so a retry starts alone.
            await self._end_lifespan()
            raise
        return app

    async def _end_lifespan(self) -> None:
        """Cancel the lifespan task and wait until it has ended (its exception retrieved: never "never retrieved")."""
        task, self._lifespan = self._lifespan, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # unlike `await task`, a cancellation of the caller's own still reaches it
        if not task.cancelled():
            task.exception()

    async def _reply(self) -> MutableMapping[str, Any]:
        assert self._lifespan is not None
        reply = asyncio.ensure_future(self._outbox.get())
        try:
            async with asyncio.timeout(_LIFESPAN_TIMEOUT_S):
                await asyncio.wait((reply, self._lifespan), return_when=asyncio.FIRST_COMPLETED)
            if reply.done():
                return reply.result()
        finally:
            reply.cancel()  # a no-op once answered; else no getter outlives the wait (one would take a later message)
        error = self._lifespan.exception() if not self._lifespan.cancelled() else None
        return {"type": "lifespan.failed", "message": repr(error)}

    async def close(self) -> None:
        if self._lifespan is None or self._lifespan.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(TimeoutError):
            await self._reply()
        await self._end_lifespan()


@dataclass(frozen=True, slots=True)
class _Canonical:
    canonical: str


@dataclass(frozen=True, slots=True)
class _Route:
    """What the service's middleware reads from a match to label a request: route.resource.canonical."""

    resource: _Canonical


_MCP_ROUTE = _Route(_Canonical("/mcp"))


class _MCPMatchInfo(ASGIMatchInfo):
    """aiohttp-asgi's match has no route (and its resource counts no routes, so it is falsy): name one."""

    @property
    def route(self) -> Any:
        return _MCP_ROUTE


class _MCPResource(ASGIResource):
    """`/mcp` and below, handed to the ASGI app."""

    def raw_match(self, path: str) -> bool:
        return path == "/mcp" or path.startswith("/mcp/")

    async def resolve(self, request: web.Request) -> tuple[_MCPMatchInfo | None, set[str]]:  # type: ignore[override]
        if not self.raw_match(request.path):
            return None, set()
        return _MCPMatchInfo(self._handle), set(ClientRequest.ALL_METHODS)


def mount_mcp(app: web.Application, settings: Settings, backends: Callable[[], Any]) -> None:
    """Serve the MCP tools at `/mcp`; `backends()` is the app's, once it has started."""

    async def build() -> ASGIApp:
        # The import is the slow part (~1 s): off the event loop.
        module = await asyncio.to_thread(importlib.import_module, "correlator.mcp")
        built: ASGIApp = module.streamable_app(settings, backends)
        return built

    lazy = LazyASGI(build)

    async def lifespan(_app: web.Application) -> AsyncIterator[None]:
        yield
        await lazy.close()

    app.router.register_resource(_MCPResource(lazy, root_path="/mcp"))
    app.cleanup_ctx.append(lifespan)
