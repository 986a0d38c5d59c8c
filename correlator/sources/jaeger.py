"""Jaeger v2: `GET /api/v3/traces/{id}` (OTLP JSON), falling back to `GET /api/traces/{id}`.

Both encodings are parsed here into the same `Trace`. Facts that shape the code
(reference/backend-apis.md §1): v3 wraps OTLP/JSON in `{"result": …}` with hex IDs, integer
enums and ns timestamps as decimal strings; the UI model uses µs integers, prints 64-bit IDs
as 16 chars and puts service names in `processes`; error bodies are JSON sent as text/plain,
so answers are read by status and body, never by content type.

Learnt from a real v2.13 (= module v1.76.0): successful v3 answers are `text/plain`, `/api/traces`
ones `application/json`; an unknown path under `/api/` is answered `200` with the UI's
index.html (the static handler's catch-all), not HEAD's `404 page not found` — so a Jaeger
without api_v3 can show itself either way, and both trigger the `/api/traces` fallback.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import itertools
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import httpx
import msgspec

from correlator.config import JaegerSettings
from correlator.errors import SourceError, SourceHTTPError, SourceProtocolError
from correlator.gcpause import without_gc
from correlator.ids import TraceId, normalise_span_id
from correlator.model import Span, SpanEvent, SpanLink, Trace, Window
from correlator.offload import RawTrace
from correlator.sources import SourceResult, _lazyjson, _native
from correlator.sources._http import HttpAnswer, get, not_json, parse_json
from correlator.spancap import cap_spans
from correlator.timeparams import rfc3339_ns
from correlator.untraced_share import SearchAnswer, spans_within

__all__ = ["JaegerSource", "others_search_window", "parse_otlp_answer", "parse_otlp_trace", "parse_ui_trace", "ui_trace_url"]

SOURCE = "jaeger"
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_KIND_NAMES = {"SPAN_KIND_" + v.upper(): v for v in _KINDS.values()}
_V1_NOTE = "answered by /api/traces (no api_v3)"
_UNSEEN: Any = object()
T = TypeVar("T")
_MARKUP = re.compile(rb"\s*<")  # `body.lstrip()[:1] == b"<"` without copying the body


def ui_trace_url(ui_base: str, trace_hex: str) -> str:
    """The Jaeger UI page of one trace (`{ui_base}/trace/{id}`), e.g. for links in answers."""
    return f"{ui_base.rstrip('/')}/trace/{trace_hex}"


# ------------------------------------------------------------------------------ OTLP JSON


def _any_value(value: Mapping[str, Any]) -> Any:
    """OTLP AnyValue → Python; 64-bit ints arrive as decimal strings (OTLP/JSON), numbers too."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return value["bytesValue"]  # base64 as sent; shown, not interpreted
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values", []))
    return None


def _attributes(items: Any) -> dict[str, Any]:
    # Keys repeat on every span (`db.statement`, `http.route`): one copy each (sys.intern).
    return {_key(kv["key"]): _any_value(kv.get("value") or {}) for kv in items or () if isinstance(kv, dict) and "key" in kv}


def _key(key: Any) -> Any:
    return sys.intern(key) if type(key) is str else key


def _otlp_id(raw: Any, size: int) -> str | None:
    """OTLP/JSON IDs are hex; a proto3-JSON producer may send base64 — accept both."""
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.lower()
    if len(text) == size * 2 and not text.strip("0123456789abcdef"):  # all hex (C speed: 3 per span)
        return None if text == "0" * (size * 2) else text
    try:
        decoded = base64.b64decode(raw, validate=True)
    except ValueError:
        return None
    return decoded.hex() if len(decoded) == size and any(decoded) else None


def _status(code: Any, attributes: Mapping[str, Any]) -> str:
    if code in (2, "STATUS_CODE_ERROR") or attributes.get("error") in (True, "true"):
        return "error"
    if code in (1, "STATUS_CODE_OK"):
        return "ok"
    return "unset"


def _kind(raw: Any) -> str:
    if isinstance(raw, int):
        return _KINDS.get(raw, "unspecified")
    return _KIND_NAMES.get(str(raw), "unspecified")


@without_gc
def parse_otlp_trace(obj: Any, trace_id_hex: str) -> Trace:
    """OTLP/JSON TracesData (the object inside v3's `result`) → Trace; other traces' spans dropped."""
    if not isinstance(obj, dict):
        raise ValueError("TracesData must be an object")
    resources = (
        (resource_spans.get("resource"), (scope_spans.get("spans") or () for scope_spans in resource_spans.get("scopeSpans") or ()))
        for resource_spans in obj.get("resourceSpans") or ()
    )
    return _otlp_trace(resources, trace_id_hex)


class _ScopeSpans(msgspec.Struct):
    spans: list[msgspec.Raw] | None = None


class _ResourceSpans(msgspec.Struct):
    resource: msgspec.Raw = msgspec.Raw(b"null")
    scopeSpans: list[_ScopeSpans] | None = None


class _TracesData(msgspec.Struct):
    resourceSpans: list[_ResourceSpans] | None = None


class _V3Answer(msgspec.Struct):
    result: _TracesData


@without_gc
def parse_otlp_answer(body: bytes | bytearray, trace_id_hex: str) -> Trace | None:
    """v3's answer bytes (`{"result": TracesData}`) → Trace.

    Natively (`_native`) when the extension is installed and takes the answer, else in Python: the same
    Trace either way (tests/test_native_otlp.py). None when there is no `result` object. Raises NotJson,
    and what `parse_otlp_trace` raises.
    """
    decoder = _native_decoder()
    if decoder is not None:
        spans = decoder.spans(body, trace_id_hex)
        if spans is not None:
            return Trace(trace_id_hex, spans)
    return _python_otlp_answer(body, trace_id_hex)


@functools.cache
def _native_decoder() -> Any | None:
    """The native decoder of v3 answers, or None: no extension, an older one without it, or the model's fields
    are not the ones it sets (CORRELATOR_REQUIRE_NATIVE=1 makes the last two an ImportError, as for the line loop)."""
    if _native.MODULE is None:
        return None
    names = [[f.name for f in dataclasses.fields(cls)] for cls in (Span, SpanEvent, SpanLink)]
    try:
        return _native.MODULE.OtlpDecoder(Span, names[0], SpanEvent, names[1], SpanLink, names[2], list(_KINDS.values()),
                                          _any_value, _otlp_id)
    except (AttributeError, TypeError) as exc:  # the Python parse, which knows
        if os.environ.get("CORRELATOR_REQUIRE_NATIVE") == "1":
            raise ImportError(f"CORRELATOR_REQUIRE_NATIVE=1 but the native trace decode is unusable: {exc}") from None
        return None


if os.environ.get("CORRELATOR_REQUIRE_NATIVE") == "1":
    _native_decoder()  # unusable: an ImportError now, as `_native` gives for the line loop


def _python_otlp_answer(body: bytes | bytearray, trace_id_hex: str) -> Trace | None:
    """The reference parse (and the fallback of the native one): one span decoded at a time (`_lazyjson`)."""
    answer = _lazyjson.envelope(body, _V3Answer)
    if answer is None:  # another shape: the full parse says what is wrong, as it always did
        obj = _lazyjson.whole(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("result"), dict):
            return None
        return parse_otlp_trace(obj["result"], trace_id_hex)
    resources = (
        (_lazyjson.item(rs.resource), (map(_lazyjson.item, ss.spans or ()) for ss in rs.scopeSpans or ()))
        for rs in answer.result.resourceSpans or ()
    )
    return _otlp_trace(resources, trace_id_hex)


def _by_time(events: tuple[SpanEvent, ...]) -> tuple[SpanEvent, ...]:
    """Jaeger returns a span's events in storage order, not time order; readers expect time order."""
    if len(events) < 2 or all(a.time_ns <= b.time_ns for a, b in itertools.pairwise(events)):
        return events
    return tuple(sorted(events, key=lambda e: e.time_ns))  # stable: simultaneous events keep their order




def _events(items: Any, start: int) -> tuple[SpanEvent, ...]:
    return _by_time(tuple(
        SpanEvent(str(e.get("name") or ""), int(e.get("timeUnixNano") or start), _attributes(e.get("attributes")))
        for e in items
    ))


def _links(items: Any) -> tuple[SpanLink, ...]:
    return tuple(SpanLink(_otlp_id(link.get("traceId"), 16) or "", _otlp_id(link.get("spanId"), 8) or "") for link in items)


def _span_attributes(items: Any) -> dict[str, Any]:
    """`_attributes`, with the common case (a string value) read in place: one call per span, not per attribute."""
    out: dict[str, Any] = {}
    if not items:
        return out
    intern = sys.intern
    for kv in items:
        if not isinstance(kv, dict) or "key" not in kv:
            continue
        key, value = kv["key"], kv.get("value")
        if type(key) is str:
            key = intern(key)
        # `_any_value` looks for stringValue first too: same value, without the call.
        out[key] = value["stringValue"] if type(value) is dict and "stringValue" in value else _any_value(value or {})
    return out


def _otlp_trace(resources: Iterable[tuple[Any, Iterable[Iterable[Any]]]], trace_id_hex: str) -> Trace:
    """(resource, its scopes' spans) pairs → Trace.

    One loop, names bound once and the usual shapes read in place (100k spans: the parse was a third of the
    whole pipeline); every value as `_otlp_id`, `_attributes`, `_kind` and `_status` make it.
    """
    spans: list[Span] = []
    append = spans.append
    # raw ID text → its normal form (or None): one copy of each equal string — a parent's ID is its parent's
    # span ID (100k spans: −12 MB, bench P5) — and each distinct ID checked once. Per parse, so it dies with it.
    ids: dict[str, str | None] = {}
    trace_ids: dict[str, str | None] = {}  # apart: a text valid as one size of ID is not as the other
    names: dict[str, str] = {}  # operation names repeat: one copy each
    kinds, kind_names = _KINDS, _KIND_NAMES
    for resource_obj, scopes in resources:
        resource = _attributes((resource_obj or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown_service")
        for scope_spans in scopes:
            for raw in scope_spans:
                get = raw.get
                sid_raw = get("spanId")
                if type(sid_raw) is not str:
                    continue  # `_otlp_id` → None
                span_id = ids.get(sid_raw)
                if span_id is None:
                    if sid_raw in ids:
                        continue
                    span_id = ids[sid_raw] = _otlp_id(sid_raw, 8)
                    if span_id is None:
                        continue
                tid_raw = get("traceId")
                if type(tid_raw) is str and tid_raw:
                    trace_hex = trace_ids.get(tid_raw, _UNSEEN)
                    if trace_hex is _UNSEEN:
                        trace_hex = trace_ids[tid_raw] = _otlp_id(tid_raw, 16)
                    if trace_hex is not None and trace_hex != trace_id_hex:
                        continue
                attributes = _span_attributes(get("attributes"))
                status = get("status") or {}
                start = int(get("startTimeUnixNano") or 0)
                raw_events = get("events")
                events = _events(raw_events, start) if raw_events else ()
                raw_links = get("links")
                links = _links(raw_links) if raw_links else ()
                parent_raw = get("parentSpanId")
                if type(parent_raw) is str and parent_raw:
                    parent = ids.get(parent_raw, _UNSEEN)
                    if parent is _UNSEEN:
                        parent = ids[parent_raw] = _otlp_id(parent_raw, 8)
                else:
                    parent = None
                operation = get("name")
                operation = str(operation) if operation else ""
                operation = names.setdefault(operation, operation)
                end = int(get("endTimeUnixNano") or start)
                kind = get("kind", 0)
                kind = kinds.get(kind, "unspecified") if isinstance(kind, int) else kind_names.get(str(kind), "unspecified")
                code = _status(status.get("code", 0), attributes)
                append(Span(span_id, parent, service, operation, start, end, kind, code, status.get("message") or None,
                            attributes, events, links))
    return Trace(trace_id_hex, tuple(spans))


# ------------------------------------------------------------------------------ UI model


def _tags(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items or ():
        if not isinstance(kv, dict):
            continue
        value = kv.get("value")
        if kv.get("type") == "int64" and isinstance(value, str):
            value = int(value)  # JS-unsafe int64s arrive as strings
        out[kv.get("key", "")] = value
    return out


def _ui_kind(raw: Any) -> str:
    kind = str(raw or "").lower()
    return kind if kind in _KINDS.values() else "unspecified"


@without_gc
def parse_ui_trace(obj: Any) -> Trace:
    """One UI-model trace (`data[0]` of /api/traces/{id}) → Trace; µs → ns."""
    if not isinstance(obj, dict) or not isinstance(obj.get("spans"), list):
        raise ValueError("a UI-model trace needs a spans list")
    trace_hex = str(obj.get("traceID", "")).lower().rjust(32, "0")
    processes = obj.get("processes") or {}
    spans: list[Span] = []
    for raw in obj["spans"]:
        span_id = normalise_span_id(raw.get("spanID"))
        if span_id is None:
            continue
        tags = _tags(raw.get("tags"))
        parent = None
        links: list[SpanLink] = []
        for ref in raw.get("references") or ():
            ref_span = normalise_span_id(ref.get("spanID"))
            same_trace = str(ref.get("traceID", "")).lower().rjust(32, "0") == trace_hex
            if ref.get("refType") == "CHILD_OF" and parent is None and same_trace:
                parent = ref_span
            elif ref_span:
                links.append(SpanLink(str(ref.get("traceID", "")).lower().rjust(32, "0"), ref_span))
        if parent is None and raw.get("parentSpanID"):
            parent = normalise_span_id(raw["parentSpanID"])
        process = processes.get(raw.get("processID")) or raw.get("process") or {}
        start = int(raw.get("startTime") or 0) * 1000
        events = _by_time(tuple(
            SpanEvent(str(fields.pop("event", "") or ""), int(log.get("timestamp") or 0) * 1000, fields)
            for log in raw.get("logs") or ()
            for fields in [_tags(log.get("fields"))]
        ))
        status_code = tags.pop("otel.status_code", None)
        if status_code == "ERROR" and tags.get("error") is True:
            # Jaeger's OTLP→UI translation adds error=true to every ERROR span; it is not one of
            # the span's own attributes, and v3 does not show it, so both encodings agree without it.
            del tags["error"]
        for scope_tag in ("otel.scope.name", "otel.scope.version"):  # OTLP keeps these on the scope
            tags.pop(scope_tag, None)
        spans.append(Span(
            span_id=span_id,
            parent_span_id=parent,
            service=str(process.get("serviceName") or "unknown_service"),
            operation=str(raw.get("operationName") or ""),
            start_ns=start,
            end_ns=start + int(raw.get("duration") or 0) * 1000,
            kind=_ui_kind(tags.pop("span.kind", None)),
            status="error" if tags.get("error") in (True, "true") or status_code == "ERROR" else "ok" if status_code == "OK" else "unset",
            status_message=tags.pop("otel.status_description", None),
            attributes=tags,
            events=events,
            links=tuple(links),
        ))
    warnings = tuple(str(w) for w in obj.get("warnings") or ())
    return Trace(trace_hex, tuple(spans), warnings)


# ------------------------------------------------------------------------------ the source

def others_search_window(window: Window) -> Window:
    """Where to search for other traces overlapping `window`: Jaeger's search matches on span *start*, so
    also a while before it (a request of the service that began earlier may still be running): twice the
    window, between 100 ms and 10 s. Looking further back fills the search depth with traces that ended
    long ago (then nothing is known); a request of the service that ran longer than that is missed.
    """
    lookback = min(10_000_000_000, max(100_000_000, 2 * (window.end_ns - window.start_ns)))
    return Window(window.start_ns - lookback, window.end_ns)



class _SearchValue(msgspec.Struct):
    stringValue: Any = None


class _SearchAttribute(msgspec.Struct):
    key: str = ""
    value: _SearchValue | None = None


class _SearchResource(msgspec.Struct):
    attributes: list[_SearchAttribute] | None = None


class _SearchSpan(msgspec.Struct):
    traceId: Any = None
    startTimeUnixNano: Any = 0
    endTimeUnixNano: Any = None


class _SearchScope(msgspec.Struct):
    spans: list[_SearchSpan] | None = None


class _SearchResourceSpans(msgspec.Struct):
    resource: _SearchResource | None = None
    scopeSpans: list[_SearchScope] | None = None


class _SearchResult(msgspec.Struct):
    resourceSpans: list[_SearchResourceSpans] | None = None


class _SearchBody(msgspec.Struct):
    result: _SearchResult | None = None


_search_decoder = msgspec.json.Decoder(_SearchBody)


def _service_spans(raw: bytes | bytearray, service: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """A search answer's traces, each with the (start, end) of its spans of `service`.

    Decodes only those fields (a search returns whole traces: tens of thousands of spans for an
    investigation's joint window). Raises ValueError/TypeError when the body is not such an answer.
    """
    try:
        body = _search_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    if body.result is None:
        raise ValueError("no result object")
    traces: dict[str, list[tuple[int, int]]] = {}
    for resource_spans in body.result.resourceSpans or ():
        attributes = resource_spans.resource.attributes if resource_spans.resource else None
        name = next((a.value.stringValue for a in attributes or () if a.key == "service.name" and a.value), None)
        for scope_spans in resource_spans.scopeSpans or ():
            for raw_span in scope_spans.spans or ():
                trace_hex = _otlp_id(raw_span.traceId, 16)
                if trace_hex is None:
                    continue
                spans = traces.setdefault(trace_hex, [])
                if name == service:
                    start = int(raw_span.startTimeUnixNano or 0)
                    spans.append((start, int(raw_span.endTimeUnixNano or start)))
    return {trace: tuple(spans) for trace, spans in traces.items()}



def _error_message(answer: HttpAnswer) -> str:
    """Jaeger's JSON error bodies (v3: error.message; v1: errors[0].msg), else the text."""
    try:
        body = parse_json(SOURCE, answer, "error body")
    except SourceProtocolError:
        return answer.text(200)
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict) and body["error"].get("message"):
            return str(body["error"]["message"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("msg", ""))
    return answer.text(200)


def _route_missing(answer: HttpAnswer) -> bool:
    """This Jaeger has no such route: HEAD's `404 page not found`, or older ones' UI catch-all page."""
    if answer.status == 404:
        return answer.text(50).startswith("404 page not found")
    return answer.status == 200 and _MARKUP.match(answer.body) is not None


def _parsed(answer: HttpAnswer, what: str, parse: Callable[..., T], *args: Any) -> T:
    """A 200 whose JSON does not have the documented shape is a protocol error, not a crash."""
    try:
        return parse(*args)
    except _lazyjson.NotJson:
        raise not_json(SOURCE, answer, what) from None
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SourceProtocolError(SOURCE, f"{what}: 200 with a malformed trace: {type(exc).__name__}: {exc}") from None


class JaegerSource:
    """One trace by ID from Jaeger v2's query service (api_v3; `/api/traces` when it lacks that)."""

    def __init__(self, settings: JaegerSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    def _headers(self, tenant: str | None) -> dict[str, str] | None:
        return {"X-Scope-OrgID": tenant} if tenant else None

    @overload
    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None) -> SourceResult[Trace | None]: ...

    @overload
    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None,
                    raw_above: int) -> SourceResult[Trace | RawTrace | None]: ...

    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None,
                    raw_above: int | None = None) -> SourceResult[Any]:
        """The trace; with `raw_above`, a v3 answer of that many bytes or more comes back unparsed (offload.py)."""
        params: dict[str, str] = {}
        if window is not None:
            # snake_case: the only names before v2.19, deprecated aliases after — they work everywhere.
            params = {"start_time": rfc3339_ns(window.start_ns), "end_time": rfc3339_ns(window.end_ns)}
        path = f"/api/v3/traces/{trace_id.hex}"
        answer = await get(self.client, SOURCE, path, params, self._headers(tenant), self.settings.max_response_bytes,
                           spool_above=raw_above)
        if answer.spooled is not None:  # a 200 of raw_above bytes or more, written to a file as it arrived (bench P8)
            raw = RawTrace.in_file(answer.spooled.path, trace_id.hex, self.settings.max_spans, f"GET {path}")
            if _MARKUP.match(answer.spooled.head) is not None:  # a (huge) UI page: no api_v3; the file goes with `raw`
                return await self._fetch_v1(trace_id, window, tenant)
            return SourceResult(raw)
        if _route_missing(answer):
            return await self._fetch_v1(trace_id, window, tenant)  # a Jaeger without api_v3
        if answer.status == 404:
            # The JSON `{"error":{"httpCode":404,…}}`: "No traces found" / "trace not found".
            return SourceResult(None, not_found=True)
        if answer.status != 200:
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET {path}: {_error_message(answer)}")
        if raw_above is not None and len(answer.body) >= raw_above:
            return SourceResult(RawTrace(answer.body, trace_id.hex, self.settings.max_spans, f"GET {path}"))
        trace = _parsed(answer, f"GET {path}", parse_otlp_answer, answer.body, trace_id.hex)
        if trace is None:
            raise SourceProtocolError(SOURCE, f"GET {path}: 200 without a `result` object")
        if not trace.spans:
            return SourceResult(None, not_found=True)
        return self._capped(trace)

    async def _fetch_v1(self, trace_id: TraceId, window: Window | None, tenant: str | None) -> SourceResult[Trace | None]:
        params = {"start": str(window.start_ns // 1000), "end": str(window.end_ns // 1000)} if window else {}
        path = f"/api/traces/{trace_id.hex}"
        answer = await get(self.client, SOURCE, path, params, self._headers(tenant), self.settings.max_response_bytes)
        if answer.status == 404 and not _route_missing(answer):
            return SourceResult(None, not_found=True, note=_V1_NOTE)
        if answer.status != 200:
            # Includes a plain `404 page not found`: neither trace route exists, so this is no Jaeger query service.
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET {path} (no /api/v3 either): {_error_message(answer)}")
        body = parse_json(SOURCE, answer, f"GET {path} (no /api/v3 either)")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise SourceProtocolError(SOURCE, f"GET {path}: 200 without a `data` list")
        if not data:
            return SourceResult(None, not_found=True, note=_V1_NOTE)
        result = self._capped(_parsed(answer, f"GET {path}", parse_ui_trace, data[0]))
        return SourceResult(result.value, result.truncated, note=_V1_NOTE)

    def _capped(self, trace: Trace) -> SourceResult[Trace | None]:
        kept, cut = cap_spans(trace, self.settings.max_spans)
        return SourceResult(kept, truncated=cut is not None, cut=cut.sentence() if cut is not None else None)

    async def other_traces(self, service: str, window: Window, exclude_hex: str, depth: int,
                           tenant: str | None = None) -> list[tuple[int, int]] | None:
        """(start, end) of the spans of `service` in other traces around `window`, or None when unknown.

        One `GET /api/v3/traces` search (snake_case parameters and `query.num_traces`: what every v2 accepts;
        v2.13 ignores `query.search_depth` and then refuses a depth of 0). Unknown when
        Jaeger fails or the search hits `depth` (more traces than were returned may overlap).
        """
        try:
            answer = await self.service_traces(service, others_search_window(window), depth, tenant)
        except SourceError:
            return None
        usable, spans = spans_within(answer, answer.window, exclude_hex, depth)
        return spans if usable else None

    async def service_traces(self, service: str, search: Window, depth: int, tenant: str | None = None) -> SearchAnswer:
        """The traces with a span of `service` starting in `search` (at most `depth`), each with its spans of
        `service`: one `GET /api/v3/traces` search. Raises a SourceError when Jaeger gives no usable answer."""
        params = {"query.service_name": service, "query.start_time_min": rfc3339_ns(search.start_ns),
                  "query.start_time_max": rfc3339_ns(search.end_ns), "query.num_traces": str(depth)}
        answer = await get(self.client, SOURCE, "/api/v3/traces", params, self._headers(tenant),
                           self.settings.max_response_bytes)
        if answer.status == 404 and not _route_missing(answer):
            return SearchAnswer(search, {}, True)  # "No traces found"
        if answer.status != 200:
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET /api/v3/traces: {_error_message(answer)}")
        try:
            traces = _service_spans(answer.body, service)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise SourceProtocolError(SOURCE, f"GET /api/v3/traces: unexpected answer ({type(exc).__name__})") from None
        return SearchAnswer(search, traces, len(traces) < depth)

    async def ready(self) -> None:
        """Raises a SourceError unless the query service answers `GET /api/v3/services` with 200."""
        answer = await get(self.client, SOURCE, "/api/v3/services", None, None, 1024 * 1024)
        if answer.status != 200:
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET /api/v3/services: {_error_message(answer)}")
