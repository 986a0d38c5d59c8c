from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.loki import scenario
from tests.integration.otlp import send_seed_trace
from tests.integration.servers import Jaeger, Prometheus, jaeger_server, prometheus_server

SC = scenario()
TRACE = SC["trace_id"]


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    with prometheus_server() as server:
        yield server


@pytest.fixture(scope="session")
def jaeger() -> Iterator[Jaeger]:
    with jaeger_server() as server:
        yield server


@pytest.fixture(scope="session")
def t0(jaeger: Jaeger, prometheus: Prometheus) -> int:
    """The recorded scenario's trace, sent to Jaeger where the real exemplar for it was stamped."""
    body = httpx.get(f"{prometheus.url}/api/v1/query_exemplars",
                     params={"query": "http_server_duration_seconds_bucket", "start": time.time() - 3600, "end": time.time() + 60}).json()
    stamps = [ex["timestamp"] for s in body["data"] for ex in s["exemplars"] if ex["labels"]["trace_id"] == TRACE]
    exemplar_ns = round(stamps[0] * 1000) * 1_000_000
    start = exemplar_ns - 145_000_000
    send_seed_trace(jaeger.otlp_url, TRACE, SC["span_ids"], start)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # wait until Jaeger has all five spans
        answer = httpx.get(f"{jaeger.query_url}/api/v3/traces/{TRACE}")
        if answer.status_code == 200 and answer.text.count('"spanId"') >= 5:
            return start
        time.sleep(0.2)
    raise AssertionError("trace never reached Jaeger")
