"""auth-service: the seed's Auth Service (15 ms token validation). Logs in logfmt."""

from __future__ import annotations

import asyncio

from aiohttp import web

from demo.services.telemetry import Telemetry, serve

t = Telemetry("auth-service", "logfmt")
routes = web.RouteTableDef()


@routes.get("/validate")
async def validate(_request: web.Request) -> web.Response:
    await asyncio.sleep(0.015)
    t.log("info", "token validated", user=42)
    return web.json_response({"user": 42})


@routes.get("/profile")
async def profile(_request: web.Request) -> web.Response:
    await asyncio.sleep(0.030)
    t.log("info", "profile loaded", user=42)
    return web.json_response({"user": 42, "name": "Ada"})


app = t.app()
app.add_routes(routes)

if __name__ == "__main__":
    serve(app, 8001)
