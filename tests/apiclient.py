"""The app under test with counted mock backends: the `backends` and `make_client` fixtures
(registered for every test in tests/conftest.py) and the seed-shaped answers they give."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient

from correlator.api import create_app
from correlator.config import Settings, load_settings
from tests.conftest import FIXTURES

T0 = 1_795_572_505_053_254_099
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def otlp_trace() -> dict[str, Any]:
    def span(span_id: str, parent: str | None, name: str, start_ms: int, end_ms: int, **extra: Any) -> dict[str, Any]:
        body = {"traceId": TRACE, "spanId": span_id, "name": name, "kind": 2,
                "startTimeUnixNano": str(T0 + start_ms * 1_000_000), "endTimeUnixNano": str(T0 + end_ms * 1_000_000),
                "status": {}, **extra}
        if parent:
            body["parentSpanId"] = parent
        return body

    def resource(service: str, *spans: dict[str, Any]) -> dict[str, Any]:
        return {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "demo"}, "spans": list(spans)}]}

    return {"result": {"resourceSpans": [
        resource("api-gateway", span("00f067aa0ba902b7", None, "GET /api/courses", 0, 145)),
        resource("auth-service", span("eee19b7ec3c1b174", "00f067aa0ba902b7", "validate", 5, 20)),
        resource("course-service",
                 span("53995c3f42cd8ad8", "00f067aa0ba902b7", "GET /courses", 20, 140),
                 span("b7ad6b7169203331", "53995c3f42cd8ad8", "SELECT courses", 25, 105, kind=3),
                 span("c5e1a2f2d9d4e821", "53995c3f42cd8ad8", "cache lookup", 106, 111, kind=1)),
    ]}}


def recorded_loki(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "recorded" / "loki" / name).read_text())["response"]["body"]


class Backends:
    """Counts and answers every request the app's real httpx clients send."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.jaeger: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(200, json=otlp_trace())
        self.loki: Callable[[httpx.Request], httpx.Response] = self._loki
        self.prometheus: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(200, json={
            "status": "success", "data": [{"seriesLabels": {"__name__": "http_server_duration_seconds_bucket",
                                                            "service": "api-gateway", "le": "0.25"},
                                           "exemplars": [{"labels": {"trace_id": TRACE, "span_id": "00f067aa0ba902b7"},
                                                          "value": "0.145", "timestamp": 1795572505.198}]}]})

    @staticmethod
    def _loki(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ready":
            return httpx.Response(200, text="ready\n")
        query = request.url.params["query"]
        name = "query_range.line_filter_categorized.json" if "|=" in query else "query_range.structured_metadata_categorized.json"
        return httpx.Response(200, json=recorded_loki(name))

    def transports(self) -> dict[str, httpx.AsyncBaseTransport]:
        def counted(name: str) -> httpx.MockTransport:
            def handle(request: httpx.Request) -> httpx.Response:
                self.requests.append(request)
                return getattr(self, name)(request)
            return httpx.MockTransport(handle)
        return {name: counted(name) for name in ("jaeger", "loki", "prometheus")}


@pytest.fixture
def backends() -> Backends:
    return Backends()


@pytest.fixture
def make_client(aiohttp_client: Any, backends: Backends) -> Callable[..., Any]:
    async def make(settings: Settings | None = None) -> TestClient:
        return await aiohttp_client(create_app(settings or load_settings(environ={}), backends.transports()))
    return make
