"""/investigate over big traces: each is parsed, assembled and read (its digest, root and duration) in the worker
process, as /correlate's are (issue 14, P8), and the investigation says what an all-on-the-loop one says."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from correlator.api import BACKENDS, create_app
from correlator.config import load_settings
from tests.apiclient import T0, Backends
from tests.test_offload import big_trace

IDS = [f"{n:032x}" for n in range(0xA1, 0xA5)]  # four traces: ~620, 570, 430 and 2 kB of OTLP JSON
SIZES = {IDS[0]: 1300, IDS[1]: 1200, IDS[2]: 900, IDS[3]: 4}


def backends() -> Backends:
    bodies = {tid: orjson.dumps(big_trace(n, trace_id=tid)) for tid, n in SIZES.items()}
    exemplars = {"status": "success", "data": [{
        "seriesLabels": {"__name__": "http_server_duration_seconds_bucket", "service": "api-gateway", "le": "+Inf"},
        "exemplars": [{"labels": {"trace_id": tid}, "value": str(value), "timestamp": (T0 + 50_000_000) / 1e9}
                      for tid, value in zip(IDS, (2.5, 2.4, 0.2, 0.1), strict=True)]}]}
    b = Backends()

    def jaeger(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/traces":  # the untraced lookup's search: no other traces
            return httpx.Response(404, json={"error": {"httpCode": 404, "message": "No traces found"}})
        return httpx.Response(200, content=bodies[request.url.path.rsplit("/", 1)[-1]])

    b.jaeger = jaeger
    b.prometheus = lambda r: httpx.Response(200, json=exemplars)
    return b


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    body.pop("ms", None)
    body.get("summary", {}).pop("ms", None)
    for trace in body.get("traces", ()):
        for source in trace.get("sources", {}).values():
            source.pop("ms", None)
    return body


PARAMS = {"query": "http_server_duration_seconds_bucket", "start": str((T0 - 60_000_000_000) // 1_000_000_000),
          "end": str((T0 + 60_000_000_000) // 1_000_000_000), "threshold": "1"}


async def test_big_traces_are_read_in_the_worker_and_the_investigation_is_the_same(aiohttp_client: Any) -> None:
    params = PARAMS
    answers = []
    for offload_bytes in (0, 500_000):  # the two slow traces are big
        settings = load_settings(environ={"CORRELATOR_SERVER_OFFLOAD_BYTES": str(offload_bytes)})
        client = await aiohttp_client(create_app(settings, backends().transports()))
        response = await client.get("/investigate", params=params)
        assert response.status == 200, await response.text()
        answers.append((comparable(await response.json()), client.app))
    (inline, _), (offloaded, app) = answers
    assert app[BACKENDS].correlator.offload._pool is not None  # the big ones went to the worker
    assert [(t["status"], t["why"]) for t in offloaded["traces"]] == [("ok", None)] * 4
    assert all(t["duration_ms"] and t["root"] for t in offloaded["traces"])
    assert offloaded == inline


async def test_more_big_traces_than_the_worker_holds_are_skipped_with_the_reason(aiohttp_client: Any) -> None:
    settings = load_settings(environ={"CORRELATOR_SERVER_OFFLOAD_BYTES": "200000"})  # three are big now
    client = await aiohttp_client(create_app(settings, backends().transports()))
    body = await (await client.get("/investigate", params=PARAMS)).json()
    statuses = [(t["status"], t["why"]) for t in body["traces"]]
    skipped = [why for status, why in statuses if status == "failed"]
    assert len(skipped) == 1 and "an investigation reads at most 2 of those" in skipped[0] and "/correlate" in skipped[0]
    assert sum(status == "ok" for status, _ in statuses) == 3  # the others are read
