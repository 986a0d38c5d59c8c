"""End to end through the HTTP API: real Jaeger v2 + real Prometheus + the recorded Loki.

The trace is the recorded Loki scenario's (same trace and span IDs), sent to Jaeger over
OTLP, placed in time so that the real exemplar Prometheus scraped for it falls at the end of
its root span — as a histogram observed when the request finished would. The fake Loki's
recorded lines are shifted by the same amount, so all three pillars meet.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from correlator.api import create_app
from correlator.config import load_settings
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration.servers import Jaeger, Prometheus, free_port

pytestmark = pytest.mark.integration
SC = scenario()
TRACE = SC["trace_id"]


async def client_for(aiohttp_client: Any, aiohttp_server: Any, jaeger: Jaeger, prometheus: Prometheus, t0: int,
                     loki_url: str | None = None) -> Any:
    if loki_url is None:
        loki = await aiohttp_server(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))
        loki_url = f"http://127.0.0.1:{loki.port}"
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger.query_url, "CORRELATOR_LOKI_URL": loki_url,
                                      "CORRELATOR_PROMETHEUS_URL": prometheus.url, "CORRELATOR_DEADLINE_SECONDS": "5"})
    return await aiohttp_client(create_app(settings))


async def test_one_call_joins_all_three_pillars(aiohttp_client: Any, aiohttp_server: Any, jaeger: Jaeger,
                                                prometheus: Prometheus, t0: int) -> None:
    client = await client_for(aiohttp_client, aiohttp_server, jaeger, prometheus, t0)
    response = await client.get(f"/correlate/{TRACE}")
    assert response.status == 200
    body = await response.json()
    assert {k: v["status"] for k, v in body["sources"].items()} == {"jaeger": "ok", "loki": "ok", "prometheus": "ok"}
    summary = body["summary"]
    assert (summary["root_service"], summary["span_count"], summary["log_count"], summary["exemplar_count"]) == (
        "api-gateway", 5, 8, 2)
    spans = {s["span_id"]: s for s in body["spans"]}
    ids = SC["span_ids"]
    # Every recorded line lands on the span it was written in; the OTLP lines by their metadata.
    logs = {entry["id"]: entry for entry in body["logs"]}
    assert {logs[i]["line"][:40] for i in spans[ids["auth"]]["log_ids"]} == {"token validated", "permission cache miss"}
    assert len(spans[ids["db"]]["log_ids"]) == 2 and len(spans[ids["gateway"]]["log_ids"]) == 2
    assert all(entry["match"] == "span_id" for entry in body["logs"])
    # Both exemplars (bucket and counter) carry the gateway span ID.
    assert sorted(spans[ids["gateway"]]["exemplar_ids"]) == sorted(ex["id"] for ex in body["exemplars"])
    assert body["findings"][0]["kind"] == "bottleneck" and body["findings"][0]["span_ids"] == [ids["db"]]
    assert body["critical_path"][0] == ids["gateway"] and ids["db"] in body["critical_path"]


async def test_with_a_time_hint_all_three_run_at_once(aiohttp_client: Any, aiohttp_server: Any, jaeger: Jaeger,
                                                      prometheus: Prometheus, t0: int) -> None:
    """Grafana links carry the exemplar's time: the same answer, without waiting for Jaeger first."""
    client = await client_for(aiohttp_client, aiohttp_server, jaeger, prometheus, t0)
    body = await (await client.get(f"/correlate/{TRACE}", params={"start": str(t0), "end": str(t0 + 145_000_000)})).json()
    assert (body["summary"]["span_count"], body["summary"]["log_count"], body["summary"]["exemplar_count"]) == (5, 8, 2)


async def test_a_backend_that_is_down_gives_a_partial_answer(aiohttp_client: Any, aiohttp_server: Any, jaeger: Jaeger,
                                                             prometheus: Prometheus, t0: int) -> None:
    client = await client_for(aiohttp_client, aiohttp_server, jaeger, prometheus, t0, loki_url=f"http://127.0.0.1:{free_port()}")
    started = time.perf_counter()
    response = await client.get(f"/correlate/{TRACE}")
    body = await response.json()
    assert response.status == 200 and time.perf_counter() - started < 5.5
    assert body["sources"]["loki"]["status"] == "unavailable"
    assert body["summary"]["span_count"] == 5 and body["summary"]["exemplar_count"] == 2 and body["logs"] == []


async def test_metric_to_trace_reverse_lookup(aiohttp_client: Any, aiohttp_server: Any, jaeger: Jaeger,
                                              prometheus: Prometheus, t0: int) -> None:
    client = await client_for(aiohttp_client, aiohttp_server, jaeger, prometheus, t0)
    body = await (await client.get("/exemplars", params={"query": "http_server_duration_seconds_bucket"})).json()
    link = next(ex["correlate"] for ex in body["exemplars"] if ex["trace_id"] == TRACE)
    path = link.split("8080", 1)[1]
    followed = await client.get(path)
    assert followed.status == 200 and (await followed.json())["summary"]["span_count"] == 5


async def test_the_cli_prints_the_seed_tree(jaeger: Jaeger, prometheus: Prometheus, t0: int, aiohttp_server: Any) -> None:
    loki = await aiohttp_server(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))
    env = {"CORRELATOR_JAEGER_URL": jaeger.query_url, "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}",
           "CORRELATOR_PROMETHEUS_URL": prometheus.url}
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "correlator", "correlate", TRACE,
                                                env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        # A timed-out CLI must not outlive the test (its pipe would be reported unclosed).
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert ("● +25ms course-service: SELECT courses → SELECT * FROM courses WHERE active = true (80ms) [2 logs] "
            "← Bottleneck!") in text
    assert "● +0ms api-gateway: GET /api/courses (145ms) [2 logs, 2 exemplars]" in text
    assert "└── Response (total: 145ms)" in text
