"""The floor P3 is measured against: a server that makes the correlator's four backend calls
(Jaeger, then Loki ×2 and Prometheus at once), parses their JSON, and does nothing else.

    python bench/floor.py PORT BACKEND_URL httpx-aiohttp|httpx-httpcore|aiohttp|correlator-client

Run by `bench/run.py p3 --floor MODE` under the same load as the correlator. What the
correlator loses to this server is its own work (verify, join, analysis, render); what this
server loses to the `aiohttp` mode is the HTTP client's cost. `correlator-client` sends the same
calls through the correlator's own client stack (`make_client` + `get`: retries, breaker, byte
cap, error mapping), so its distance to `aiohttp` is what that stack costs.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import orjson
from aiohttp import ClientSession, TCPConnector, web
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tree this file is in, for correlator-client

POOL = 100  # connections per backend


def make_app(backend: str, mode: str) -> web.Application:
    app = web.Application()
    state: dict[str, object] = {}

    async def start(_app: web.Application) -> None:
        for name in ("jaeger", "loki", "prometheus"):  # one pool per backend, as in the correlator
            if mode == "correlator-client":
                from correlator.config import load_settings
                from correlator.sources._http import make_client

                settings = load_settings(environ={f"CORRELATOR_{name.upper()}_URL": backend,
                                                  f"CORRELATOR_{name.upper()}_MAX_CONNECTIONS": str(POOL)})
                state[name] = make_client(getattr(settings, name))
            elif mode == "aiohttp":
                state[name] = ClientSession(backend, connector=TCPConnector(limit=POOL))
            else:
                limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
                transport = AiohttpTransport(limits=limits) if mode == "httpx-aiohttp" else httpx.AsyncHTTPTransport(limits=limits)
                state[name] = httpx.AsyncClient(base_url=backend, transport=transport)

    async def stop(_app: web.Application) -> None:
        for closable in state.values():
            await closable.aclose() if isinstance(closable, httpx.AsyncClient) else await closable.close()  # type: ignore[attr-defined]

    async def fetch(backend: str, path: str, params: dict[str, str] | None = None) -> object:
        if mode == "correlator-client":
            from correlator.sources._http import get

            answer = await get(state[backend], backend, path, params)  # type: ignore[arg-type]
            return orjson.loads(answer.body)
        if mode == "aiohttp":
            session: ClientSession = state[backend]  # type: ignore[assignment]
            async with session.get(path, params=params) as response:
                return orjson.loads(await response.read())
        client: httpx.AsyncClient = state[backend]  # type: ignore[assignment]
        reply = await client.get(path, params=params)
        return orjson.loads(reply.content)

    async def correlate(request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"]
        await fetch("jaeger", f"/api/v3/traces/{trace_id}")
        loki = {"start": "1", "end": "2", "limit": "1000"}
        await asyncio.gather(
            fetch("loki", "/loki/api/v1/query_range", {**loki, "query": f'{{service_name=~"a|b"}} |= "{trace_id}"'}),
            fetch("loki", "/loki/api/v1/query_range", {**loki, "query": f'{{service_name=~"a|b"}} | trace_id="{trace_id}"'}),
            fetch("prometheus", "/api/v1/query_exemplars", {"query": '{__name__=~".+"}', "start": "1", "end": "2"}),
        )
        return web.json_response({"trace_id": trace_id}, dumps=lambda v: orjson.dumps(v).decode())

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/correlate/{trace_id}", correlate)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    port, backend, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    web.run_app(make_app(backend, mode), host="127.0.0.1", port=port, access_log=None, print=None)
