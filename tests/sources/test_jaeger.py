"""The Jaeger source against Jaeger's own fixtures, through the real client stack (MockTransport).

Error and 404 bodies below are the ones a real Jaeger v2.13 wrote (see tests/integration/test_jaeger_real.py):
JSON, but sent as `text/plain; charset=utf-8` like every Go `http.Error`.
"""

from __future__ import annotations

import copy
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
from correlator.sources.jaeger import JaegerSource, parse_otlp_trace, parse_ui_trace, ui_trace_url
from tests.conftest import FIXTURES, closed_after_test

J = FIXTURES / "upstream" / "jaeger"
TEXT = {"Content-Type": "text/plain; charset=utf-8"}  # what Go's http.Error writes, JSON or not
NOT_FOUND_V3 = '{"error":{"httpCode":404,"message":"No traces found"}}\n'
NOT_FOUND_V1 = '{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}\n'
NO_ROUTE = "404 page not found\n"  # Go's mux for an unknown route (Jaeger HEAD under /api/)
UI_PAGE = "<!DOCTYPE html>\n<html lang=\"en\">…"  # what v2.13 serves for an unknown path: the UI's index.html
OTLP_ID = "83a9efd15c1c98a977e0711cc93ee28b"  # the otlp2jaeger pair's trace


def fixture(name: str) -> Any:
    return json.loads((J / name).read_text())


def source(handler: Callable[[httpx.Request], httpx.Response], **env: str) -> tuple[JaegerSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = load_settings(environ={"CORRELATOR_JAEGER_RETRY_ATTEMPTS": "1", **env}).jaeger
    return JaegerSource(settings, closed_after_test(make_client(settings, httpx.MockTransport(record)))), seen


def otlp_span(**fields: Any) -> dict[str, Any]:
    """The v3 GetTrace snapshot's span with some fields replaced, as a whole TracesData object."""
    data = copy.deepcopy(fixture("api_v3_GetTrace.snapshot.json")["result"])
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(fields)
    return data


def otlp_value(value: dict[str, Any]) -> Any:
    """What one OTLP AnyValue parses to, as a span attribute."""
    trace = parse_otlp_trace(otlp_span(attributes=[{"key": "k", "value": value}]), "00000000000000000000000000000001")
    return trace.spans[0].attributes["k"]


class TestOtlpParser:
    def test_v3_snapshot_kind_status_and_padded_ids(self) -> None:
        """The GetTrace snapshot: integer kind 2 is server, status code 2 is error, no service → unknown_service."""
        trace = parse_otlp_trace(fixture("api_v3_GetTrace.snapshot.json")["result"], "00000000000000000000000000000001")
        (span,) = trace.spans
        assert (span.span_id, span.parent_span_id, span.kind, span.status, span.operation) == ("0000000000000002", None, "server", "error", "foobar")
        assert span.service == "unknown_service"

    def test_typed_event_attributes_and_nameless_events(self) -> None:
        """log_tags_trace: string/int-as-string/bool/double/bytes values keep their types; events may lack a name."""
        trace = parse_otlp_trace(fixture("log_tags_trace.otlp_tracesdata.json"), "00000000000000000000000000000002")
        (span,) = trace.spans
        assert (span.service, span.kind, span.status) == ("query02-service", "unspecified", "unset")
        assert (span.start_ns, span.end_ns) == (1485449191639875000, 1485449191639880000)  # ns strings, as sent
        first, second = span.events
        assert first.attributes == {"sameplacetag1": "sameplacevalue", "sameplacetag2": 123, "sameplacetag4": True,
                                    "sameplacetag3": 72.5, "blob": "AAAwOQ=="}
        assert (first.name, first.time_ns) == ("", 1485449191639875000)
        assert (second.name, second.attributes) == ("", {})

    @pytest.mark.parametrize(("value", "parsed"), [
        ({"intValue": "9223372036854775807"}, 9223372036854775807),  # int64 as a decimal string (OTLP/JSON)
        ({"intValue": 42}, 42),  # …or a number, which receivers must accept too
        ({"doubleValue": 0.5}, 0.5),
        ({"boolValue": False}, False),
        ({"bytesValue": "AAAwOQ=="}, "AAAwOQ=="),
        ({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}, ["a", 2]),
        ({"arrayValue": {}}, []),
        ({"kvlistValue": {"values": [{"key": "x", "value": {"boolValue": True}}]}}, {"x": True}),
        ({}, None),
    ])
    def test_every_attribute_value_type(self, value: dict[str, Any], parsed: Any) -> None:
        assert otlp_value(value) == parsed

    @pytest.mark.parametrize(("kind", "name"), [
        (0, "unspecified"), (1, "internal"), (2, "server"), (3, "client"), (4, "producer"), (5, "consumer"),
        (9, "unspecified"), ("SPAN_KIND_CONSUMER", "consumer"),
    ])
    def test_kinds(self, kind: Any, name: str) -> None:
        assert parse_otlp_trace(otlp_span(kind=kind), "00000000000000000000000000000001").spans[0].kind == name

    @pytest.mark.parametrize(("status", "attributes", "expected"), [
        ({}, [], "unset"),
        ({"code": 1}, [], "ok"),
        ({"code": 2, "message": "boom"}, [], "error"),
        ({}, [{"key": "error", "value": {"boolValue": True}}], "error"),  # the Jaeger/OpenTracing convention
        ({"code": 1}, [{"key": "error", "value": {"stringValue": "true"}}], "error"),
    ])
    def test_statuses(self, status: dict[str, Any], attributes: list[Any], expected: str) -> None:
        span = parse_otlp_trace(otlp_span(status=status, attributes=attributes), "00000000000000000000000000000001").spans[0]
        assert span.status == expected
        assert span.status_message == status.get("message")

    def test_numbers_links_parent_and_foreign_spans(self) -> None:
        """ns may be numbers; links keep their trace; a span of another trace in the same answer is dropped."""
        data = otlp_span(startTimeUnixNano=1_000, endTimeUnixNano=3_000, parentSpanId="00000000000000aa",
                         links=[{"traceId": "0000000000000000000000000000abcd", "spanId": "00000000000000bb"}],
                         events=[{"timeUnixNano": 2_000, "name": "exception"}])
        foreign = dict(data["resourceSpans"][0]["scopeSpans"][0]["spans"][0], traceId="f" * 32, spanId="00000000000000cc")
        data["resourceSpans"][0]["scopeSpans"][0]["spans"].append(foreign)
        (span,) = parse_otlp_trace(data, "00000000000000000000000000000001").spans
        assert (span.start_ns, span.end_ns, span.duration_ns, span.parent_span_id) == (1_000, 3_000, 2_000, "00000000000000aa")
        assert [(link.trace_id, link.span_id) for link in span.links] == [("0000000000000000000000000000abcd", "00000000000000bb")]
        assert [(e.name, e.time_ns) for e in span.events] == [("exception", 2_000)]


class TestUiParser:
    def test_both_encodings_give_the_same_trace(self) -> None:
        """OTLP in and Jaeger's UI-model out of the same spans parse to equal Traces (µs → ns, scope tags dropped)."""
        otlp = parse_otlp_trace(fixture("otlp2jaeger-in.otlp_tracesdata.json"), OTLP_ID)
        ui = parse_ui_trace(fixture("otlp2jaeger-out.ui_model_response.json")["data"][0])
        assert otlp == ui
        assert len(ui.spans) == 2 and ui.spans[0].span_id == ui.spans[1].span_id  # duplicates kept for the tree to report
        span = ui.spans[0]
        assert (span.service, span.kind, span.parent_span_id) == ("telemetrygen", "server", "909541b92cf05311")
        assert (span.start_ns, span.duration_ns) == (1706678909209712000, 123_000)
        assert span.attributes == {"net.peer.ip": "1.2.3.4", "peer.service": "telemetrygen-client"}

    def test_ui_01_ids_references_tags_and_logs(self) -> None:
        """A 64-bit trace printed as 16 chars; the first same-trace CHILD_OF is the parent, other refs are links."""
        trace = parse_ui_trace(fixture("ui_01.ui_model_trace.json"))
        assert trace.trace_id == "00000000000000000000000000000001"
        assert trace.warnings == ("some trace warning",)
        assert [s.span_id for s in trace.spans] == ["0000000000000002", "0000000000000002", "0000000000000003",
                                                    "0000000000000004", "0000000000000005"]
        first, tagged, child, refs, grandchild = trace.spans
        assert [(e.name, e.time_ns, e.attributes) for e in first.events] == [
            ("some-event", 1485467191639875000, {}), ("", 1485467191639875000, {"x": "y"})]
        assert tagged.status == "error" and tagged.service == "service-x"
        assert tagged.attributes == {"peer.service": "service-y", "peer.ipv4": 23456, "error": True, "temperature": 72.5,
                                     "javascript_limit": 9223372036854775222, "blob": "AAAwOQ=="}
        assert (child.parent_span_id, child.service, child.kind, child.status) == ("0000000000000002", "service-y", "unspecified", "unset")
        assert refs.parent_span_id == "0000000000000002"  # not the other trace's CHILD_OF listed first
        assert [(link.trace_id, link.span_id) for link in refs.links] == [
            ("000000000000000000000000000000ff", "00000000000000ff"), ("00000000000000000000000000000001", "0000000000000002")]
        assert grandchild.parent_span_id == "0000000000000004"
        assert (grandchild.start_ns, grandchild.end_ns) == (1485467191639875000, 1485467191639879000)

    def test_otel_tags_become_kind_and_status(self) -> None:
        """span.kind, otel.status_code/description and the error=true Jaeger adds to ERROR spans are not attributes."""
        raw = copy.deepcopy(fixture("ui_01.ui_model_trace.json"))
        raw["spans"][2]["tags"] = [
            {"key": "span.kind", "type": "string", "value": "client"},
            {"key": "otel.status_code", "type": "string", "value": "ERROR"},
            {"key": "otel.status_description", "type": "string", "value": "db timeout"},
            {"key": "error", "type": "bool", "value": True},
            {"key": "db.system", "type": "string", "value": "postgresql"},
        ]
        raw["spans"][3]["tags"] = [{"key": "span.kind", "type": "string", "value": "producer"},
                                   {"key": "otel.status_code", "type": "string", "value": "OK"}]
        spans = parse_ui_trace(raw).spans
        assert (spans[2].kind, spans[2].status, spans[2].status_message, spans[2].attributes) == (
            "client", "error", "db timeout", {"db.system": "postgresql"})
        assert (spans[3].kind, spans[3].status) == ("producer", "ok")

    def test_not_a_trace(self) -> None:
        with pytest.raises(ValueError):
            parse_ui_trace({"traceID": "1"})


class TestSource:
    async def test_v3_with_the_window_in_snake_case(self) -> None:
        """The window goes as start_time/end_time, RFC 3339 with nanoseconds in UTC: the names every v2 accepts."""
        jaeger, seen = source(lambda r: httpx.Response(200, json=fixture("api_v3_GetTrace.snapshot.json")))
        result = await jaeger.fetch(parse_trace_id("1"), Window(1_795_572_505_000_000_001, 1_795_572_506_000_000_000))
        assert result.value is not None and len(result.value.spans) == 1 and not result.truncated
        assert seen[0].url.path == "/api/v3/traces/00000000000000000000000000000001"
        assert dict(seen[0].url.params) == {"start_time": "2026-11-25T02:08:25.000000001Z", "end_time": "2026-11-25T02:08:26.000000000Z"}

    async def test_no_window_no_params(self) -> None:
        jaeger, seen = source(lambda r: httpx.Response(200, json=fixture("api_v3_GetTrace.snapshot.json")))
        await jaeger.fetch(parse_trace_id("1"), None)
        assert dict(seen[0].url.params) == {} and "X-Scope-OrgID" not in seen[0].headers

    @pytest.mark.parametrize("body", [NOT_FOUND_V3, '{"error":{"httpCode":404,"message":"trace not found"}}\n'])
    async def test_json_404_is_not_found(self, body: str) -> None:
        """Jaeger's own 404 means "no such trace": no fallback, no error."""
        jaeger, seen = source(lambda r: httpx.Response(404, text=body, headers=TEXT))
        result = await jaeger.fetch(parse_trace_id("1"), None)
        assert result.value is None and result.not_found and len(seen) == 1

    async def test_empty_result_is_not_found(self) -> None:
        jaeger, _ = source(lambda r: httpx.Response(200, json={"result": {"resourceSpans": []}}))
        result = await jaeger.fetch(parse_trace_id("1"), None)
        assert result.value is None and result.not_found

    @pytest.mark.parametrize("missing", [
        httpx.Response(404, text=NO_ROUTE, headers=TEXT),
        httpx.Response(200, text=UI_PAGE, headers={"Content-Type": "text/html; charset=utf-8"}),
    ], ids=["404-page-not-found", "ui-catch-all"])
    async def test_falls_back_to_api_traces_when_v3_is_missing(self, missing: httpx.Response) -> None:
        """A Jaeger without api_v3 answers Go's plain 404 or its UI page: ask the UI-model route, window in µs."""
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/api/v3/"):
                return missing
            return httpx.Response(200, json=fixture("otlp2jaeger-out.ui_model_response.json"))

        jaeger, seen = source(handle)
        result = await jaeger.fetch(parse_trace_id(OTLP_ID), Window(10**18, 10**18 + 10**9))
        assert result.value == parse_otlp_trace(fixture("otlp2jaeger-in.otlp_tracesdata.json"), OTLP_ID)
        assert [r.url.path for r in seen] == [f"/api/v3/traces/{OTLP_ID}", f"/api/traces/{OTLP_ID}"]
        assert dict(seen[1].url.params) == {"start": str(10**15), "end": str(10**15 + 10**6)}
        assert result.note == "answered by /api/traces (no api_v3)"

    async def test_fallback_pads_a_64_bit_trace(self) -> None:
        """The UI model prints a 64-bit trace ID as 16 chars; the answer carries the 32-char form."""
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/api/v3/"):
                return httpx.Response(404, text=NO_ROUTE, headers=TEXT)
            return httpx.Response(200, json={"data": [fixture("ui_01.ui_model_trace.json")], "errors": None}, headers=TEXT)

        jaeger, seen = source(handle, CORRELATOR_JAEGER_MAX_SPANS="3")
        result = await jaeger.fetch(parse_trace_id("0000000000000001"), None, tenant="team-a")
        assert result.value is not None and result.value.trace_id == "00000000000000000000000000000001"
        assert result.truncated and len(result.value.spans) == 3
        assert [r.headers.get("X-Scope-OrgID") for r in seen] == ["team-a", "team-a"]

    @pytest.mark.parametrize("v1", [
        httpx.Response(404, text=NOT_FOUND_V1, headers=TEXT),
        httpx.Response(200, json={"data": [], "errors": None}),
    ])
    async def test_fallback_not_found(self, v1: httpx.Response) -> None:
        jaeger, _ = source(lambda r: httpx.Response(404, text=NO_ROUTE, headers=TEXT) if "/v3/" in r.url.path else v1)
        result = await jaeger.fetch(parse_trace_id("1"), None)
        assert result.value is None and result.not_found and result.note == "answered by /api/traces (no api_v3)"

    async def test_neither_route_is_an_error(self) -> None:
        """No /api/v3 and no /api/traces: whatever answers is not a Jaeger query service."""
        jaeger, _ = source(lambda r: httpx.Response(404, text=NO_ROUTE, headers=TEXT))
        with pytest.raises(SourceHTTPError, match=r"404 from GET /api/traces/.*no /api/v3 either"):
            await jaeger.fetch(parse_trace_id("1"), None)

    @pytest.mark.parametrize(("status", "body", "message"), [
        (400, '{"error":{"httpCode":400,"message":"malformed parameter start_time: parsing time \\"bad\\""}}\n',
         r"400 from GET /api/v3/traces/.*: malformed parameter start_time"),
        (500, '{"error":{"httpCode":500,"message":"storage down"}}\n', "500 from .*storage down"),
        (503, "upstream connect error", "503 from .*upstream connect error"),  # a proxy's text, shown as sent
    ])
    async def test_error_bodies_are_read_whatever_the_content_type(self, status: int, body: str, message: str) -> None:
        jaeger, seen = source(lambda r: httpx.Response(status, text=body, headers=TEXT))
        with pytest.raises(SourceHTTPError, match=message) as caught:
            await jaeger.fetch(parse_trace_id("1"), None)
        assert caught.value.status_code == status and len(seen) == 1

    async def test_v1_error_body(self) -> None:
        """/api/traces errors carry `errors[0].msg`."""
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/api/v3/"):
                return httpx.Response(404, text=NO_ROUTE, headers=TEXT)
            return httpx.Response(500, text='{"data":null,"errors":[{"code":500,"msg":"storage down"}]}\n', headers=TEXT)

        jaeger, _ = source(handle)
        with pytest.raises(SourceHTTPError, match="storage down"):
            await jaeger.fetch(parse_trace_id("1"), None)

    async def test_success_as_text_plain_or_without_content_type(self) -> None:
        """v2.13 sends v3 answers as text/plain, some earlier versions with no Content-Type: both parse."""
        body = json.dumps(fixture("api_v3_GetTrace.snapshot.json")).encode()
        for headers in (TEXT, {}):
            ok, _ = source(lambda r, headers=headers: httpx.Response(200, content=body, headers=headers))
            assert (await ok.fetch(parse_trace_id("1"), None)).value is not None

    @pytest.mark.parametrize("body", [
        b"not json at all",
        json.dumps(fixture("api_v3_FindTraceSummaries.snapshot.json")).encode(),  # valid JSON, wrong answer
        json.dumps({"result": {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "0000000000000002", "startTimeUnixNano": "soon"}]}]}]}}).encode(),
        json.dumps({"result": {"resourceSpans": ["oops"]}}).encode(),
    ], ids=["text", "summaries", "bad-time", "bad-shape"])
    async def test_unusable_200_is_a_protocol_error(self, body: bytes) -> None:
        jaeger, seen = source(lambda r: httpx.Response(200, content=body))
        with pytest.raises(SourceProtocolError):
            await jaeger.fetch(parse_trace_id("1"), None)
        assert len(seen) == 1

    async def test_html_everywhere_is_a_protocol_error(self) -> None:
        """A proxy's HTML page on both routes: not a trace, and not mistaken for "not found"."""
        jaeger, seen = source(lambda r: httpx.Response(200, text="<html>proxy error</html>"))
        with pytest.raises(SourceProtocolError, match="not JSON"):
            await jaeger.fetch(parse_trace_id("1"), None)
        assert len(seen) == 2

    async def test_max_spans_keeps_the_top_of_the_tree_and_says_what_went(self) -> None:
        jaeger, _ = source(lambda r: httpx.Response(200, json={"result": fixture("otlp2jaeger-in.otlp_tracesdata.json")}),
                           CORRELATOR_JAEGER_MAX_SPANS="1")
        whole, _ = source(lambda r: httpx.Response(200, json={"result": fixture("otlp2jaeger-in.otlp_tracesdata.json")}))
        result = await jaeger.fetch(parse_trace_id(OTLP_ID), None)
        every = (await whole.fetch(parse_trace_id(OTLP_ID), None)).value
        assert result.truncated and result.value is not None and every is not None and len(result.value.spans) == 1
        ids = {s.span_id for s in every.spans}
        assert result.value.spans[0].parent_span_id not in ids  # a root, not whichever span the answer listed first
        assert result.cut is not None and result.cut.startswith(f"kept 1 of {len(every.spans)} spans (jaeger.max_spans)")

    async def test_tenant_header(self) -> None:
        jaeger, seen = source(lambda r: httpx.Response(200, json=fixture("api_v3_GetTrace.snapshot.json")))
        await jaeger.fetch(parse_trace_id("1"), None, tenant="team-a")
        assert seen[0].headers["X-Scope-OrgID"] == "team-a"

    async def test_ready(self) -> None:
        """Ready means /api/v3/services answers 200; anything else raises with Jaeger's message."""
        up, seen = source(lambda r: httpx.Response(200, text='{"services":[]}', headers=TEXT))
        await up.ready()
        assert seen[0].url.path == "/api/v3/services"
        down, _ = source(lambda r: httpx.Response(503, text='{"error":{"httpCode":503,"message":"storage not ready"}}', headers=TEXT))
        with pytest.raises(SourceHTTPError, match="storage not ready"):
            await down.ready()


def test_ui_trace_url() -> None:
    assert ui_trace_url("http://jaeger:16686/", "ab" * 16) == f"http://jaeger:16686/trace/{'ab' * 16}"
    assert ui_trace_url("https://x.example/jaeger", "01" * 16) == f"https://x.example/jaeger/trace/{'01' * 16}"


@pytest.mark.parametrize("name", ["api_v3_GetTrace.snapshot.json", "log_tags_trace.otlp_tracesdata.json",
                                  "otlp2jaeger-in.otlp_tracesdata.json"])
def test_the_bytes_parse_equals_the_parsed_one(name: str) -> None:
    """The service parses v3 answers from the bytes, one span at a time: the same trace."""
    from correlator.sources.jaeger import parse_otlp_answer

    data = fixture(name)
    traces = data["result"] if "result" in data else data
    for trace_id in {s.get("traceId") for rs in traces["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}:
        expected = parse_otlp_trace(traces, trace_id)
        assert parse_otlp_answer(bytearray(json.dumps({"result": traces}).encode()), trace_id) == expected
        assert expected.spans


@pytest.mark.parametrize("body", [b'{"result": {"resourceSpans": ["oops"]}}', b'{"result": {"resourceSpans": [{"scopeSpans": [7]}]}}',
                                  b'{"result": {"resourceSpans": [{"resource": 3, "scopeSpans": []}]}}',
                                  b'{"result": {"resourceSpans": [{"scopeSpans": [{"spans": [5]}]}]}}'])
def test_odd_shapes_fail_from_bytes_as_from_dicts(body: bytes) -> None:
    from correlator.sources.jaeger import parse_otlp_answer

    with pytest.raises((ValueError, TypeError, AttributeError, KeyError)) as from_dicts:
        parse_otlp_trace(json.loads(body)["result"], "1" * 32)
    with pytest.raises(from_dicts.type, match=str(from_dicts.value).replace("'", ".")):
        parse_otlp_answer(body, "1" * 32)
    assert parse_otlp_answer(b'{"results": {}}', "1" * 32) is None
