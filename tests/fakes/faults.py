"""A fault-injecting HTTP proxy: forwards to a real backend, or misbehaves on purpose.

Faults: hang (accept, never answer), trickle (headers, then a byte every 0.3 s — httpx's
read timeout never fires on it), 500, 429 + Retry-After, malformed JSON, truncated body
(Content-Length promises more than is sent), oversized body, wrong content type (an HTML
error page), and `pass` (forward). Refused connections need no proxy: a closed port.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

FAULTS = ("refused", "hang", "trickle", "500", "429", "malformed", "truncated", "oversized", "wrong_type")
OVERSIZED_BYTES = 3 * 1024 * 1024
MODE: web.AppKey[dict[str, str]] = web.AppKey("mode", dict)


def make_fault_proxy(upstream: str, mode: str = "pass") -> web.Application:
    app = web.Application()
    app[MODE] = {"mode": mode}

    async def forward(request: web.Request) -> tuple[int, bytes, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                       data=await request.read()) as response:
                return response.status, await response.read(), response.headers.get("Content-Type", "")

    async def handle(request: web.Request) -> web.StreamResponse:
        mode = request.app[MODE]["mode"]
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "trickle":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(200):
                await response.write(b" ")
                await asyncio.sleep(0.3)
            return response
        if mode == "500":
            return web.Response(status=500, text="internal server error")
        if mode == "429":
            return web.Response(status=429, text="too many requests", headers={"Retry-After": "1"})
        if mode == "malformed":
            return web.Response(status=200, body=b'{"status": "succ', content_type="application/json")
        if mode == "oversized":
            return web.Response(status=200, body=b'{"status":"success","data":"' + b"x" * OVERSIZED_BYTES + b'"}',
                                content_type="application/json")
        if mode == "wrong_type":
            return web.Response(status=200, text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        status, body, content_type = await forward(request)
        if mode == "truncated":
            response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
            response.content_length = len(body) + 1000
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app.router.add_route("*", "/{tail:.*}", handle)
    return app
