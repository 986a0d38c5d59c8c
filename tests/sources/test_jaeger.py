"""The Jaeger source against Jaeger's own fixtures, through the real client stack (MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from correlator.errors import SourceHTTPError, SourceProtocolError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.jaeger import JaegerSource, parse_otlp_trace, parse_ui_trace
from tests.conftest import FIXTURES

J = FIXTURES / "upstream" / "jaeger"
TEXT = {"Content-Type": "text/plain; charset=utf-8"}  # what Go's http.Error writes, JSON or not


def fixture(name: str) -> Any:
    return json.loads((J / name).read_text())


def source(handler: Callable[[httpx.Request], httpx.Response], **env: str) -> tuple[JaegerSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = load_settings(environ={"CORRELATOR_JAEGER_RETRY_ATTEMPTS": "1", **env}).jaeger
    return JaegerSource(settings, make_client(settings, httpx.MockTransport(record))), seen


class TestParsers:
    def test_both_encodings_give_the_same_trace(self) -> None:
        """OTLP in and Jaeger's UI-model out of the same spans parse to equal Spans (µs → ns)."""
        otlp = parse_otlp_trace(fixture("otlp2jaeger-in.otlp_tracesdata.json"), "83a9efd15c1c98a977e0711cc93ee28b")
        ui = parse_ui_trace(fixture("otlp2jaeger-out.ui_model_response.json")["data"][0])
        assert otlp.spans == ui.spans and len(otlp.spans) == 2  # the duplicate span ID is kept for the tree to report

    def test_v3_snapshot_kind_status_and_padding(self) -> None:
        trace = parse_otlp_trace(fixture("api_v3_GetTrace.snapshot.json")["result"], "00000000000000000000000000000001")
        (span,) = trace.spans
        assert (span.span_id, span.kind, span.status, span.operation) == ("0000000000000002", "server", "error", "foobar")

    def test_ui_model_64bit_id_refs_tags_and_logs(self) -> None:
        trace = parse_ui_trace(fixture("ui_01.ui_model_trace.json"))
        assert trace.trace_id == "00000000000000000000000000000001"  # printed as 16 chars upstream
        by_id = {s.span_id: s for s in trace.spans}
        child = next(s for s in trace.spans if s.parent_span_id)
        assert child.parent_span_id in by_id
        tags = {k: v for s in trace.spans for k, v in s.attributes.items()}
        assert tags.get("javascript_limit") == 9223372036854775222  # int64 sent as a string
        assert any(s.links for s in trace.spans)  # FOLLOWS_FROM / cross-trace refs become links
        assert trace.warnings

    def test_typed_event_attributes(self) -> None:
        trace = parse_otlp_trace(fixture("log_tags_trace.otlp_tracesdata.json"),
                                 fixture("log_tags_trace.otlp_tracesdata.json")["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"].lower())
        attributes = {k: v for s in trace.spans for e in s.events for k, v in e.attributes.items()}
        assert {type(v) for v in attributes.values()} >= {str, int, bool, float}


class TestSource:
    async def test_v3_with_the_window_in_snake_case(self) -> None:
        jaeger, seen = source(lambda r: httpx.Response(200, json=fixture("api_v3_GetTrace.snapshot.json")))
        result = await jaeger.fetch(parse_trace_id("1"), Window(1_795_572_505_000_000_000, 1_795_572_506_000_000_000))
        assert result.value is not None and len(result.value.spans) == 1
        assert seen[0].url.path == "/api/v3/traces/00000000000000000000000000000001"
        assert dict(seen[0].url.params) == {"start_time": "2026-11-25T02:08:25.000000000Z", "end_time": "2026-11-25T02:08:26.000000000Z"}

    async def test_json_404_is_not_found(self) -> None:
        jaeger, seen = source(lambda r: httpx.Response(404, text='{"error":{"httpCode":404,"message":"No traces found"}}', headers=TEXT))
        result = await jaeger.fetch(parse_trace_id("1"), None)
        assert result.value is None and result.not_found and len(seen) == 1

    async def test_falls_back_to_api_traces_when_v3_is_missing(self) -> None:
        """A Jaeger without api_v3 answers Go's plain `404 page not found`: ask the UI-model route."""
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/api/v3/"):
                return httpx.Response(404, text="404 page not found\n", headers=TEXT)
            return httpx.Response(200, json=fixture("otlp2jaeger-out.ui_model_response.json"), headers=TEXT)

        jaeger, seen = source(handle)
        result = await jaeger.fetch(parse_trace_id("83a9efd15c1c98a977e0711cc93ee28b"), Window(10**18, 10**18 + 10**9))
        assert result.value is not None and len(result.value.spans) == 2
        assert seen[1].url.path == "/api/traces/83a9efd15c1c98a977e0711cc93ee28b"
        assert dict(seen[1].url.params) == {"start": str(10**15), "end": str(10**15 + 10**6)}  # µs
        assert result.note == "answered by /api/traces (no api_v3)"

    async def test_error_bodies_are_read_whatever_the_content_type(self) -> None:
        jaeger, _ = source(lambda r: httpx.Response(400, text='{"error":{"httpCode":400,"message":"malformed parameter trace_id"}}', headers=TEXT))
        with pytest.raises(SourceHTTPError, match="400 from GET /api/v3/traces/.*malformed parameter trace_id"):
            await jaeger.fetch(parse_trace_id("1"), None)
        v1, _ = source(lambda r: httpx.Response(500, text='{"data":null,"errors":[{"code":500,"msg":"storage down"}]}', headers=TEXT))
        with pytest.raises(SourceHTTPError, match="storage down"):
            await v1.fetch(parse_trace_id("1"), None)

    async def test_success_without_content_type_and_garbage(self) -> None:
        """Before v2.19 successful v3 answers had no Content-Type at all."""
        body = json.dumps(fixture("api_v3_GetTrace.snapshot.json")).encode()
        ok, _ = source(lambda r: httpx.Response(200, content=body))
        assert (await ok.fetch(parse_trace_id("1"), None)).value is not None
        bad, _ = source(lambda r: httpx.Response(200, text="<html>proxy error</html>"))
        with pytest.raises(SourceProtocolError):
            await bad.fetch(parse_trace_id("1"), None)

    async def test_max_spans_truncates(self) -> None:
        jaeger, _ = source(lambda r: httpx.Response(200, json={"result": fixture("otlp2jaeger-in.otlp_tracesdata.json")}),
                           CORRELATOR_JAEGER_MAX_SPANS="1")
        result = await jaeger.fetch(parse_trace_id("83a9efd15c1c98a977e0711cc93ee28b"), None)
        assert result.truncated and len(result.value.spans) == 1  # type: ignore[union-attr]

    async def test_tenant_header(self) -> None:
        jaeger, seen = source(lambda r: httpx.Response(200, json=fixture("api_v3_GetTrace.snapshot.json")))
        await jaeger.fetch(parse_trace_id("1"), None, tenant="team-a")
        assert seen[0].headers["X-Scope-OrgID"] == "team-a"
