"""Backends for load benchmarks: answer any trace ID, after a configured latency.

Bodies are real-shaped (OTLP/JSON trace, Loki categorized streams, Prometheus exemplars) with
the requested trace ID substituted in, so the correlator does its full parse/verify/join work.
Run as a process: `python bench/fake_backends.py PORT LATENCY_MS SPANS`.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys

import orjson
from aiohttp import web

PLACEHOLDER = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_795_572_505_053_254_099
_HEX32 = re.compile(r"[0-9a-f]{32}")


def otlp_trace(spans: int) -> bytes:
    per_service: dict[str, list[dict]] = {}
    for i in range(spans):
        service = ("api-gateway", "auth-service", "course-service")[min(i, 2) if i < 3 else 2]
        parent = None if i == 0 else f"{(i - 1) // 4 + 1:016x}"
        body = {"traceId": PLACEHOLDER, "spanId": f"{i + 1:016x}", "name": f"op-{i % 7}", "kind": 2 if i < 3 else 3,
                "startTimeUnixNano": str(T0 + i * 100_000), "endTimeUnixNano": str(T0 + i * 100_000 + 5_000_000),
                "attributes": [{"key": "db.statement", "value": {"stringValue": f"SELECT * FROM t WHERE id = {i}"}}],
                "status": {}}
        if parent:
            body["parentSpanId"] = parent
        per_service.setdefault(service, []).append(body)
    return orjson.dumps({"result": {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
         "scopeSpans": [{"scope": {"name": "bench"}, "spans": items}]} for svc, items in per_service.items()]}})


def loki_streams(lines: int) -> bytes:
    values = [[str(T0 + i * 1_000_000), f'level=info msg="step {i}" trace_id={PLACEHOLDER} span_id={i % 20 + 1:016x}',
               {"structuredMetadata": {"detected_level": "info"}}] for i in range(lines)]
    return orjson.dumps({"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"],
                         "result": [{"stream": {"service_name": "course-service"}, "values": values}], "stats": {}}})


def exemplars(count: int) -> bytes:
    return orjson.dumps({"status": "success", "data": [{"seriesLabels": {"__name__": "http_server_duration_seconds_bucket",
                                                                         "service": "api-gateway", "le": "0.25"},
                         "exemplars": [{"labels": {"trace_id": PLACEHOLDER, "span_id": f"{i % 20 + 1:016x}"},
                                        "value": "0.12", "timestamp": (T0 // 1_000_000 + i) / 1e3} for i in range(count)]}]})


def make_app(latency_s: float, spans: int = 20, lines: int = 20, exemplar_count: int = 2) -> web.Application:
    trace, logs, exes = otlp_trace(spans), loki_streams(lines), exemplars(exemplar_count)

    fault_rate = float(os.environ.get("BENCH_FAULT_RATE", "0"))  # soak: faults mixed into the load

    # Queries in flight per backend and the most since the last reset (as backends.go's /stats).
    gauges = {name: {"now": 0, "peak": 0, "total": 0} for name in ("jaeger", "loki", "prometheus")}

    async def answer(template: bytes, trace_id: str, kind: str) -> web.Response:
        gauge = gauges[kind]
        gauge["now"] += 1
        gauge["total"] += 1
        gauge["peak"] = max(gauge["peak"], gauge["now"])
        try:
            return await _answer(template, trace_id)
        finally:
            gauge["now"] -= 1

    async def _answer(template: bytes, trace_id: str) -> web.Response:
        await asyncio.sleep(latency_s)
        if fault_rate and random.random() < fault_rate:
            fault = random.choice(("500", "hang", "malformed", "429"))
            if fault == "hang":
                await asyncio.sleep(5)
            elif fault == "malformed":
                return web.Response(body=b'{"status": "succ', content_type="application/json")
            else:
                return web.Response(status=int(fault), text=fault, headers={"Retry-After": "1"})
        return web.Response(body=template.replace(PLACEHOLDER.encode(), trace_id.encode()), content_type="application/json")

    async def jaeger(request: web.Request) -> web.Response:
        return await answer(trace, request.match_info["id"], "jaeger")

    async def loki(request: web.Request) -> web.Response:
        found = _HEX32.search(request.query.get("query", ""))
        return await answer(logs, found.group(0) if found else PLACEHOLDER, "loki")

    last = [PLACEHOLDER]  # Prometheus can't filter by trace: answer for the ID Jaeger was last asked

    async def prometheus(request: web.Request) -> web.Response:
        return await answer(exes, last[0], "prometheus")

    async def remember(request: web.Request) -> web.Response:
        last[0] = request.match_info["id"]
        return await jaeger(request)

    buckets = orjson.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"le": le}, "value": [1795572505.2, count]} for le, count in (("0.1", "80"), ("0.25", "95"), ("+Inf", "100"))]}})

    async def histogram(request: web.Request) -> web.Response:  # the standing lookup's instant query, as Prometheus answers
        return await answer(buckets, PLACEHOLDER, "prometheus")

    async def no_other_traces(request: web.Request) -> web.Response:  # the untraced lookup's search, as Jaeger v2 answers none
        await asyncio.sleep(latency_s)
        return web.json_response({"error": {"httpCode": 404, "message": "No traces found"}}, status=404)

    async def stats(request: web.Request) -> web.Response:
        body = orjson.dumps(gauges)
        if request.query.get("reset"):
            for gauge in gauges.values():
                gauge["peak"] = gauge["now"]
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/api/v3/traces/{id}", remember)
    app.router.add_get("/loki/api/v1/query_range", loki)
    app.router.add_get("/api/v1/query_exemplars", prometheus)
    app.router.add_get("/api/v1/query", histogram)
    app.router.add_get("/api/v3/traces", no_other_traces)
    return app


if __name__ == "__main__":
    port, latency_ms, spans = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    web.run_app(make_app(latency_ms / 1000, spans), host="127.0.0.1", port=port, access_log=None, print=None)
