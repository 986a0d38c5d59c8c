"""MCP on a big trace: its texts are made in the worker process that holds the model (the event loop stays
free, issue 14 P8), and they are the words an inline correlator gives."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from correlator.api import BACKENDS, create_app
from correlator.config import load_settings
from correlator.offload import WorkerFailed
from tests.apiclient import TRACE, Backends
from tests.mcpclient import TOKEN, http_client, text_of
from tests.test_offload import OTHER, big_trace


async def service(aiohttp_server: Any, offload_bytes: int) -> Any:
    big = {TRACE: orjson.dumps(big_trace(1500)), OTHER: orjson.dumps(big_trace(1400, trace_id=OTHER))}
    backends = Backends()
    def jaeger(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/traces":  # the untraced lookup's search for other traces: none
            return httpx.Response(404, json={"error": {"httpCode": 404, "message": "No traces found"}})
        return httpx.Response(200, content=big[request.url.path.rsplit("/", 1)[-1]])

    backends.jaeger = jaeger
    settings = load_settings(environ={"CORRELATOR_SERVER_AUTH_TOKEN": TOKEN,
                                      "CORRELATOR_SERVER_OFFLOAD_BYTES": str(offload_bytes),
                                      # Both answers stay cached while the worker keeps one model: the fourth call
                                      # finds TRACE's answer cached and its model gone, and correlates it again.
                                      "CORRELATOR_CACHE_MAX_BIG_ENTRIES": "2"})
    return await aiohttp_server(create_app(settings, backends.transports()))


async def texts(server: Any) -> list[str]:
    async with http_client(server) as client:
        calls = [("correlate_trace", {"trace_id": TRACE}),
                 ("get_span", {"trace_id": TRACE, "span_id": f"{6:016x}"}),
                 ("correlate_trace", {"trace_id": OTHER}),  # the worker now keeps OTHER's model, not TRACE's
                 ("get_span", {"trace_id": TRACE, "span_id": f"{11:016x}"}),  # so TRACE is correlated again
                 ("trace_from_log", {"line": f"level=error trace_id={TRACE} msg=boom"})]
        return [text_of(await client.call_tool(name, args)) for name, args in calls]


async def test_mcp_texts_of_a_big_trace_come_from_the_worker_and_match_an_inline_answer(aiohttp_server: Any,
                                                                                         monkeypatch: Any) -> None:
    inline = await texts(await service(aiohttp_server, 0))
    described: list[str] = []
    offloading = await service(aiohttp_server, 1024)
    offloader = offloading.app[BACKENDS].correlator.offload
    original = offloader.describe

    async def counted(model: int, fn: Any, *args: Any) -> Any:
        described.append(fn.__name__)
        try:
            return await original(model, fn, *args)
        except WorkerFailed:
            described.append("lost")
            raise

    monkeypatch.setattr(offloader, "describe", counted)
    offloaded = await texts(offloading)

    assert offloaded == inline
    assert "1500 spans" in offloaded[0] or "1,500 spans" in offloaded[0]
    assert described == ["trace_summary", "span_text", "trace_summary", "span_text", "lost", "span_text", "trace_summary"]
    assert offloader._pool is not None
