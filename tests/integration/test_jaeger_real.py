"""A real Jaeger v2 (Go-built, in-memory storage), fed over OTLP/HTTP by the OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.model import Trace, Window
from correlator.sources._http import make_client
from correlator.sources.jaeger import JaegerSource, parse_ui_trace
from correlator.spantree import build_tree
from tests.integration.otlp import send_seed_trace
from tests.integration.servers import Jaeger

pytestmark = pytest.mark.integration

TRACE = "5a1e2f3577b34da6a3ce929d0e0e4736"
SPANS = {"gateway": "1000000000000001", "auth": "1000000000000002", "courses": "1000000000000003",
         "db": "1000000000000004", "cache": "1000000000000005"}


async def fetch_until_found(source: JaegerSource, trace_id: str, spans: int, window: Window | None) -> Trace:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = await source.fetch(parse_trace_id(trace_id), window)
        if result.value is not None and len(result.value.spans) >= spans:
            return result.value
        await asyncio.sleep(0.2)
    raise AssertionError(f"trace {trace_id} did not appear in Jaeger")


@pytest.fixture(scope="module")
def sent(jaeger: Jaeger) -> int:
    t0 = time.time_ns() - 5 * 10**9
    send_seed_trace(jaeger.otlp_url, TRACE, SPANS, t0, fail_db=True)
    return t0


def jaeger_source(jaeger: Jaeger) -> JaegerSource:
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger.query_url}).jaeger
    return JaegerSource(settings, make_client(settings))


async def test_the_trace_comes_back_with_its_structure(jaeger: Jaeger, sent: int) -> None:
    t0 = sent
    trace = await fetch_until_found(jaeger_source(jaeger), TRACE, 5, Window(t0 - 60 * 10**9, t0 + 60 * 10**9))
    tree = build_tree(trace)
    spans = tree.by_id
    assert tree.problems == []
    assert tree.roots == [SPANS["gateway"]]
    assert sorted(tree.children[SPANS["gateway"]]) == sorted([SPANS["auth"], SPANS["courses"]])
    assert tree.children[SPANS["courses"]] == [SPANS["db"], SPANS["cache"]]
    assert {s.service for s in spans.values()} == {"api-gateway", "auth-service", "course-service"}
    db = spans[SPANS["db"]]
    assert (db.kind, db.status, db.status_message) == ("client", "error", "db timeout")
    assert db.attributes["db.statement"] == "SELECT * FROM courses WHERE active = true"
    assert [e.name for e in db.events] == ["exception"] and db.events[0].attributes["exception.type"] == "TimeoutError"
    assert (db.start_ns, db.end_ns) == (t0 + 25_000_000, t0 + 105_000_000)
    assert spans[SPANS["gateway"]].attributes["http.response.status_code"] == 200


async def test_unknown_trace_is_not_found(jaeger: Jaeger) -> None:
    result = await jaeger_source(jaeger).fetch(parse_trace_id("ffffffffffffffffffffffffffffffff"), None)
    assert result.value is None and result.not_found


async def test_the_v1_ui_model_gives_the_same_tree(jaeger: Jaeger, sent: int) -> None:
    """/api/traces/{id} (µs, 16-char-capable IDs, processes) parses to the same spans as /api/v3.

    Learnt from the real server: the UI model truncates times to µs; v3 keeps ns. Compared in µs.
    """
    v3 = await fetch_until_found(jaeger_source(jaeger), TRACE, 5, None)
    body = httpx.get(f"{jaeger.query_url}/api/traces/{TRACE}", timeout=5).json()
    v1 = parse_ui_trace(body["data"][0])
    key = lambda t: sorted((s.span_id, s.parent_span_id, s.service, s.operation, s.start_ns // 1000, s.end_ns // 1000, s.kind, s.status) for s in t.spans)  # noqa: E731
    assert key(v1) == key(v3)


async def test_readiness(jaeger: Jaeger) -> None:
    await jaeger_source(jaeger).ready()
