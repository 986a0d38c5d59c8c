"""The shipped configs, run natively: the demo (Node nextgen-api + Python services), real
Jaeger v2 on stack/jaeger/config.yml and real Prometheus on stack/prometheus/prometheus.yml —
both changed only in their addresses. After some load, the correlator, asked for a trace ID
read from a real exemplar, returns that trace with the exemplar attached and the slow
database query marked as the bottleneck. The schedule page's trace, read from real Jaeger,
shows the patterns of issue 11: a pool of 3, a retry after a timeout and a lock wait."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from correlator.api import create_app
from correlator.config import load_settings
from demo.native import (
    Ports,
    core_services,
    find_binaries,
    jaeger_config,
    jaeger_service,
    prometheus_config,
    prometheus_service,
    started,
)
from tests.conftest import REPO, skip_or_fail
from tests.fakes.loki import make_fake_loki_app
from tests.integration.servers import free_port, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    binaries = find_binaries()
    if binaries.jaeger is None or binaries.prometheus is None or binaries.node is None:
        skip_or_fail("the native stack needs jaeger, prometheus and node")
    if not (REPO / "demo/nextgen-api/node_modules").is_dir():
        skip_or_fail("demo/nextgen-api/node_modules missing (npm ci)")
    assert binaries.jaeger and binaries.prometheus
    # The launch is scripts/demo's (demo/native.py) on free ports, without the correlator as a
    # process: the test runs it in-process against the fake Loki. Its scrape target is a closed port.
    ports = Ports(**{name: free_port() for name, _default in Ports().items()})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "jaeger.yml").write_text(jaeger_config(ports))
        (work / "prometheus.yml").write_text(prometheus_config(ports, correlator_port=free_port()))
        services = [jaeger_service(binaries.jaeger, ports, work / "jaeger.yml"),
                    *core_services(binaries, ports, with_loki=False, extra_env={"OTEL_BSP_SCHEDULE_DELAY": "200"}),
                    prometheus_service(binaries.prometheus, ports, work / "prometheus.yml", work / "data")]
        with started(services, work / "logs"):
            api = f"http://127.0.0.1:{ports.api}"
            for _ in range(5):  # GET /api/courses (the seed tutorial's request), five times
                assert httpx.get(f"{api}/api/courses", timeout=10).status_code == 200
            yield {"jaeger": f"http://127.0.0.1:{ports.jaeger_query}", "prometheus": f"http://127.0.0.1:{ports.prometheus}",
                   "api": api, "courses": f"http://127.0.0.1:{ports.courses}"}


def exemplar_trace(prom: str) -> str | None:
    body = httpx.get(f"{prom}/api/v1/query_exemplars", params={
        "query": 'http_server_duration_seconds_bucket{service="course-service",route="/courses"}',
        "start": time.time() - 600, "end": time.time() + 60}, timeout=5).json()
    ids = [ex["labels"]["trace_id"] for s in body.get("data") or () for ex in s["exemplars"]]
    return ids[-1] if ids else None


async def test_exemplar_to_correlated_trace(stack: dict[str, str], aiohttp_client: Any, aiohttp_server: Any) -> None:
    wait_until(lambda: exemplar_trace(stack["prometheus"]) is not None, 30, "a real exemplar scraped from the demo")
    trace_id = exemplar_trace(stack["prometheus"])
    assert trace_id and re.fullmatch(r"[0-9a-f]{32}", trace_id)
    wait_until(lambda: httpx.get(f"{stack['jaeger']}/api/v3/traces/{trace_id}").text.count('"spanId"') >= 6, 30,
               "the whole trace in Jaeger")
    loki = await aiohttp_server(make_fake_loki_app())
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": stack["jaeger"], "CORRELATOR_PROMETHEUS_URL": stack["prometheus"],
                                      "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}"})
    client = await aiohttp_client(create_app(settings))
    body = await (await client.get(f"/correlate/{trace_id}")).json()
    assert body["sources"]["jaeger"]["status"] == "ok" and body["sources"]["prometheus"]["status"] == "ok"
    assert {"nextgen-api", "auth-service", "course-service"} <= set(body["summary"]["services"])
    spans = {s["span_id"]: s for s in body["spans"]}
    assert any(s["operation"] == "getCourses" and s["service"] == "nextgen-api" for s in spans.values())
    # Every service on the path observed its own histogram for this request: each exemplar must
    # land on a span of the service its series names (auth-service's on auth, course-service's on courses).
    attached = [ex for ex in body["exemplars"] if ex["metric"] == "http_server_duration_seconds_bucket"]
    assert "course-service" in {ex["series"]["service"] for ex in attached}  # auth's may be overwritten by a later request
    for ex in attached:
        assert ex["match"] == "span_id" and spans[ex["span_id"]]["service"] == ex["series"]["service"]
    bottleneck = next(f for f in body["findings"] if f["kind"] == "bottleneck")
    assert spans[bottleneck["span_ids"][0]]["operation"] == "SELECT courses"


def test_spanmetrics_reach_prometheus_under_the_alerts_names(stack: dict[str, str]) -> None:
    """The metric the seed's alert reads exists, with the labels the rule uses."""
    def present() -> bool:
        result = httpx.get(f"{stack['prometheus']}/api/v1/query", params={
            "query": 'traces_span_metrics_duration_milliseconds_bucket{span_kind="SPAN_KIND_SERVER",service_name="course-service"}'}).json()
        return bool(result["data"]["result"])
    wait_until(present, 45, "spanmetrics scraped from Jaeger")


async def test_schedule_page_pool_retry_and_lock_wait(stack: dict[str, str], aiohttp_client: Any, aiohttp_server: Any) -> None:
    """Real spans, real Jaeger: the findings name the pool of 3, the recovered timeout and the lock wait."""
    answer = httpx.get(f"{stack['courses']}/courses/7/schedule", timeout=10)
    assert answer.status_code == 200
    trace_id = answer.headers["traceresponse"].split("-")[1]
    wait_until(lambda: httpx.get(f"{stack['jaeger']}/api/v3/traces/{trace_id}").text.count('"spanId"') >= 14, 30,
               "the schedule trace in Jaeger")
    loki = await aiohttp_server(make_fake_loki_app())
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": stack["jaeger"], "CORRELATOR_PROMETHEUS_URL": stack["prometheus"],
                                      "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}"})
    client = await aiohttp_client(create_app(settings))
    body = await (await client.get(f"/correlate/{trace_id}")).json()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for finding in body["findings"]:
        by_kind.setdefault(finding["kind"], []).append(finding)
    (pool,) = [f for f in by_kind["fan_out"] if f["severity"] == "warning"]
    assert pool["evidence"]["max_concurrent"] == 3 and pool["evidence"]["waves"] == 4 and pool["evidence"]["calls"] == 10
    assert pool["message"].startswith("10 calls to SELECT seats FROM sections WHERE course_id = ? AND section = ? run at most 3")
    (error,) = by_kind["error"]
    assert error["severity"] == "warning"
    assert error["message"] == "course-service: cache get timed out — recovered, retried successfully"
    assert error["evidence"]["messages"] == ["cache timeout after 50ms"]
    (bottleneck,) = by_kind["bottleneck"]
    assert "waited for a lock ('Waiting for lock behind 3 transactions')" in bottleneck["message"]
    lock = next(s for s in body["spans"] if s["operation"] == "UPDATE course_views")
    assert [e["name"] for e in lock["events"]] == ["Waiting for lock behind 3 transactions",
                                                   "Acquired lock with 0 transactions waiting behind"]
    text = await (await client.get(f"/correlate/{trace_id}", params={"format": "text"})).text()
    assert "× 10 SELECT sections → SELECT seats FROM sections" in text and "3 at a time, 4 waves" in text
    assert "· +" in text and "Waiting for lock behind 3 transactions" in text
