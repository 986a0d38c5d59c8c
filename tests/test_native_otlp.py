"""The native decode of Jaeger v3 trace answers (native/src/otlp.rs) gives exactly the Trace of the Python one, or hands the answer back.

Differential: every OTLP trace under tests/fixtures/, bench- and spanmix-shaped bodies of several sizes,
hand-written odd answers (duplicate keys, bad hex, huge numbers, broken JSON) and hypothesis-generated
answers (missing fields, wrong types, Unicode, big ints, duplicate IDs) go through both paths; the results
must be equal down to the types of the attribute values (`1`, `1.0` and `True` are equal in Python, not
here) and the order of dict keys, or both must raise the same error. CI sets CORRELATOR_REQUIRE_NATIVE=1
(scripts/test): there the extension must be importable and really used.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fake_backends import otlp_trace
from correlator.model import Trace
from correlator.sources import _native, jaeger
from tests.conftest import FIXTURES
from tests.spanmix import TRACE_ID, bodies

pytestmark = pytest.mark.skipif(_native.MODULE is None and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
                                reason="correlator_native is not installed (pip install ./native)")

BENCH_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"


def _strict(value: Any) -> Any:
    """A value with every type spelt out: equal only when the two parses made the same objects."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple((f.name, _strict(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return ("dict", tuple((_strict(k), _strict(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_strict(v) for v in value))
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _outcome(parse: Any, body: bytes, trace_hex: str) -> Any:
    try:
        return _strict(parse(body, trace_hex))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        return type(exc), str(exc)


def _native_spans(body: bytes, trace_hex: str) -> tuple[Any, ...] | None:
    decoder = jaeger._native_decoder()
    assert decoder is not None, "the native decoder is not usable"
    spans: tuple[Any, ...] | None = decoder.spans(body, trace_hex)
    return spans


def assert_same(body: bytes, trace_hex: str) -> bool:
    """Both paths on `body`: the same Trace (or error). True when the native code took the answer itself."""
    expected = _outcome(jaeger._python_otlp_answer, body, trace_hex)
    assert _outcome(jaeger.parse_otlp_answer, body, trace_hex) == expected
    spans = _native_spans(body, trace_hex)
    if spans is None:
        return False
    assert _strict(Trace(trace_hex, spans)) == expected
    return True


def _traces_data(node: Any) -> Iterator[Any]:
    """Every OTLP TracesData (an object with `resourceSpans`) inside a fixture, wherever it sits."""
    if isinstance(node, dict):
        if "resourceSpans" in node:
            yield node
        for value in node.values():
            yield from _traces_data(value)
    elif isinstance(node, list):
        for value in node:
            yield from _traces_data(value)


def _ids_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["traceId"].lower()} if isinstance(node.get("traceId"), str) else set()
        return found.union(*(_ids_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_ids_in(v) for v in node))
    return set()


FIXTURE_TRACES = [(f"{path.relative_to(FIXTURES)}#{i}", data)
                  for path in sorted(FIXTURES.rglob("*.json"))
                  for i, data in enumerate(_traces_data(json.loads(path.read_text())))]


def test_the_fixtures_hold_otlp_traces() -> None:
    assert len(FIXTURE_TRACES) >= 3


@pytest.mark.parametrize(("name", "data"), FIXTURE_TRACES, ids=[n for n, _ in FIXTURE_TRACES])
def test_every_fixture_trace_decodes_the_same(name: str, data: Any) -> None:
    answer = {"result": data}
    for trace_hex in [*sorted(_ids_in(data)), OTHER_TRACE]:
        for body in (orjson.dumps(answer), json.dumps(answer, indent=1).encode(), json.dumps(answer, ensure_ascii=True).encode()):
            assert assert_same(body, trace_hex), f"{name}: handed back to Python"


@pytest.mark.parametrize("spans", [1, 10, 1000, 20_000])
def test_bench_bodies_decode_the_same(spans: int) -> None:
    assert assert_same(otlp_trace(spans), BENCH_TRACE)


@pytest.mark.parametrize("spans", [50, 3000])
def test_the_mixed_bodies_decode_the_same(spans: int) -> None:
    """Every AnyValue kind, kinds and status codes as numbers and names, events out of order, links, base64
    IDs, another trace's spans, duplicates (tests/spanmix.py)."""
    assert assert_same(bodies(spans, 10, 10)[0], TRACE_ID)


def test_the_native_trace_shares_strings_as_the_python_one_does() -> None:
    """P5: no more string objects than the Python parse makes (one per distinct span ID — its spellings in upper and
    lower case share one since session 8, where the Python parse makes one per spelling — a parent's being its
    parent's span ID; one per operation name), attribute keys interned."""
    body = bodies(3000, 10, 10)[0]
    native, python = jaeger.parse_otlp_answer(body, TRACE_ID), jaeger._python_otlp_answer(body, TRACE_ID)
    assert native is not None and python is not None and _native_spans(body, TRACE_ID) is not None

    def objects(trace: Trace, *fields: str) -> int:
        return len({id(getattr(span, f)) for span in trace.spans for f in fields if getattr(span, f) is not None})

    ids = {getattr(span, f) for span in native.spans for f in ("span_id", "parent_span_id")} - {None}
    assert len(ids) <= objects(native, "span_id", "parent_span_id") < objects(python, "span_id", "parent_span_id") < 2 * len(native.spans)
    for field in ("operation", "service"):
        assert objects(native, field) <= objects(python, field)
        assert objects(native, field) == len({getattr(span, field) for span in native.spans})
    keys = [key for span in native.spans for key in span.attributes]
    assert keys and all(sys.intern(key) is key for key in keys)


def test_an_older_extension_without_the_decoder_leaves_the_trace_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install .` upgraded, the native wheel not: the line loop keeps its native path, traces go the Python way."""
    class OlderExtension:
        LokiLines = object

    monkeypatch.setattr(_native, "MODULE", OlderExtension())
    monkeypatch.delenv("CORRELATOR_REQUIRE_NATIVE", raising=False)
    jaeger._native_decoder.cache_clear()
    try:
        body = otlp_trace(20)
        assert jaeger._native_decoder() is None
        assert _strict(jaeger.parse_otlp_answer(body, BENCH_TRACE)) == _strict(jaeger._python_otlp_answer(body, BENCH_TRACE))
        monkeypatch.setenv("CORRELATOR_REQUIRE_NATIVE", "1")
        jaeger._native_decoder.cache_clear()
        with pytest.raises(ImportError, match="native trace decode is unusable"):
            jaeger._native_decoder()
    finally:
        jaeger._native_decoder.cache_clear()


def _answer(spans: list[Any], resource: Any = None) -> bytes:
    return orjson.dumps({"result": {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}})


def _span(**extra: Any) -> dict[str, Any]:
    return {"traceId": BENCH_TRACE, "spanId": "00000000000000a1", "name": "op", "startTimeUnixNano": "10", **extra}


ODD_BODIES = {
    "not JSON": b'{"result": {"resourceSpans": [',
    "trailing garbage": _answer([_span()]) + b" x",
    "not an object": b"[1, 2]",
    "no result": b'{"data": {}}',
    "result null": b'{"result": null}',
    "result a list": b'{"result": []}',
    "resourceSpans an object": b'{"result": {"resourceSpans": {}}}',
    "a span that is a list": _answer([[1]]),
    "a span that is a string": _answer(["span"]),
    "duplicate result": b'{"result": {}, "result": {"resourceSpans": []}}',
    "duplicate span member": _answer([_span()])[:-5].replace(b'"name":"op"', b'"name":"a","name":"b"') + b"]}]}",
    "duplicate attribute key": _answer([_span(attributes=[{"key": "k", "value": {"stringValue": "1"}},
                                                          {"key": "k", "value": {"intValue": "2"}}])]),
    "duplicate member in an AnyValue": b'{"result":{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"00000000000000a1",'
                                       b'"attributes":[{"key":"k","value":{"intValue":"1","intValue":"2"}}]}]}]}]}}',
    "lone surrogate": _answer([_span()]).replace(b'"op"', b'"\\ud800"'),
    "lone surrogate where skipped": _answer([_span(flags="x")]).replace(b'"x"', b'"\\udc00"'),
    "number out of range where skipped": _answer([_span(flags=1)]).replace(b'"flags":1', b'"flags":1e400'),
    "huge int where skipped": _answer([_span(flags=1)]).replace(b'"flags":1', b'"flags":' + b"9" * 40),
    "huge int value": _answer([_span(attributes=[{"key": "k", "value": {"intValue": 1}}])]).replace(b'"intValue":1',
                                                                                                     b'"intValue":' + b"9" * 30),
    "deep nesting": _answer([_span(flags=1)]).replace(b'"flags":1', b'"flags":' + b"[" * 200 + b"]" * 200),
    "invalid UTF-8": _answer([_span()]).replace(b'"op"', b'"\xff"'),
    "invalid UTF-8 where skipped": _answer([_span(flags="x")]).replace(b'"x"', b'"\xc3"'),
    "time with underscores": _answer([_span(startTimeUnixNano="1_000")]),
    "time not a number": _answer([_span(startTimeUnixNano="soon")]),
    "time beyond 64 bits": _answer([_span(startTimeUnixNano="9" * 25)]),
    "time a float": _answer([_span(startTimeUnixNano=12.9)]),
    "time a list": _answer([_span(startTimeUnixNano=[1])]),
    "end before start": _answer([_span(endTimeUnixNano="5")]),
    "upper-case and base64 IDs": _answer([_span(spanId="00000000000000AB", parentSpanId=base64.b64encode(b"\1" * 8).decode(),
                                                traceId=base64.b64encode(bytes.fromhex(BENCH_TRACE)).decode())]),
    "bad hex": _answer([_span(spanId="00000000000000zz"), _span(spanId="0" * 16), _span(spanId="abc"), _span(spanId=7)]),
    "Unicode ID": _answer([_span(spanId="00000000000000aİ")]),
    "another trace": _answer([_span(traceId=OTHER_TRACE), _span(traceId="", spanId="00000000000000a2")]),
    "status by name and number": _answer([_span(status={"code": "STATUS_CODE_ERROR", "message": "boom"}),
                                          _span(spanId="00000000000000a2", status={"code": 1.0}),
                                          _span(spanId="00000000000000a3", status={"code": True}),
                                          _span(spanId="00000000000000a4", status={"code": 2.0, "message": 0}),
                                          _span(spanId="00000000000000a5", status=None)]),
    "status a string": _answer([_span(status="error")]),
    "error attribute": _answer([_span(attributes=[{"key": "error", "value": {"intValue": "1"}}]),
                                _span(spanId="00000000000000a2", attributes=[{"key": "error", "value": {"stringValue": "true"}}]),
                                _span(spanId="00000000000000a3", attributes=[{"key": "error", "value": {"doubleValue": 1}}])]),
    "kinds": _answer([_span(spanId=f"00000000000000b{i}", kind=k)
                      for i, k in enumerate([0, 1, 5, 6, -1, True, False, 2.0, "SPAN_KIND_CLIENT", "client", None, [2]])]),
    "AnyValue shapes": _answer([_span(attributes=[
        {"key": "s", "value": {"stringValue": "x", "intValue": "3"}},
        {"key": "b", "value": {"boolValue": "false"}},
        {"key": "i", "value": {"intValue": " 12 "}},
        {"key": "f", "value": {"doubleValue": "1e3"}},
        {"key": "fi", "value": {"doubleValue": 3}},
        {"key": "by", "value": {"bytesValue": "AAE="}},
        {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"kvlistValue": {"values": [{"key": "z", "value": {}}]}}]}}},
        {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "n", "value": {"boolValue": True}}]}}},
        {"key": "none", "value": {}}, {"key": "null", "value": None}, {"key": "novalue"}, {"value": {"stringValue": "keyless"}},
        "not a dict", 5, {"key": "empty list", "value": []}, {"key": "false", "value": False},
    ])]),
    "AnyValue a string": _answer([_span(attributes=[{"key": "k", "value": "stringValue"}])]),
    "array of non-objects": _answer([_span(attributes=[{"key": "k", "value": {"arrayValue": {"values": [1]}}}])]),
    "attribute key not a string": _answer([_span(attributes=[{"key": 1, "value": {"stringValue": "x"}}])]),
    "events out of order": _answer([_span(events=[{"name": "b", "timeUnixNano": "30"}, {"name": "a", "timeUnixNano": "20"},
                                                  {"name": "c"}, {"timeUnixNano": "20", "attributes": [{"key": "x", "value": {}}]},
                                                  {"name": 5, "timeUnixNano": 0}])]),
    "event not an object": _answer([_span(events=["e"])]),
    "links": _answer([_span(links=[{"traceId": OTHER_TRACE, "spanId": "00000000000000c1"}, {"spanId": "zz"}, {}])]),
    "resource shapes": orjson.dumps({"result": {"resourceSpans": [
        {"scopeSpans": [{"spans": [_span(spanId="00000000000000d1")]}], "resource": {"attributes": [
            {"key": "service.name", "value": {"intValue": "7"}}]}},
        {"resource": {"attributes": None}, "scopeSpans": None},
        {"resource": {}, "scopeSpans": [{"spans": None}, {}, {"spans": [_span(spanId="00000000000000d2")]}]},
        {"scopeSpans": [{"spans": [_span(spanId="00000000000000d3")]}]},
    ]}}),
    "resource a string": _answer([_span()], resource="r"),
    "names of every type": _answer([_span(spanId=f"00000000000000e{i}", name=n) for i, n in enumerate(["", None, 0, 3, "op", [1]])]),
}


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_odd_answers_decode_the_same_or_go_the_python_way(name: str) -> None:
    assert_same(ODD_BODIES[name], BENCH_TRACE)


def test_the_native_decode_takes_the_usual_odd_shapes_itself() -> None:
    """The shapes Jaeger does send (IDs in either case or base64, kinds and codes by name, every AnyValue kind,
    events out of order) are decoded natively, not handed back."""
    for name in ("upper-case and base64 IDs", "status by name and number", "kinds", "AnyValue shapes", "events out of order",
                 "links", "resource shapes", "error attribute", "another trace", "bad hex"):
        assert assert_same(ODD_BODIES[name], BENCH_TRACE), name


# ------------------------------------------------------------------------------ generated answers


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` nine times in ten, else `odd`: most answers must be ones the native code takes, or it is not tested."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else usual)


_json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=6)
_hex16 = st.binary(min_size=8, max_size=8).map(bytes.hex)
_ids = _mostly(
    st.sampled_from([f"00000000000000a{i}" for i in range(6)]) | _hex16,
    st.one_of(st.sampled_from(["00000000000000A2", "0" * 16, "", "xyz", "00000000000000a İ"]), _hex16.map(str.upper),
              st.binary(min_size=8, max_size=8).map(lambda b: base64.b64encode(b).decode()),
              st.binary(min_size=0, max_size=12).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=18), _json_scalars))
_trace_ids = _mostly(st.just(BENCH_TRACE),
                     st.one_of(st.sampled_from([BENCH_TRACE.upper(), OTHER_TRACE, "", "0" * 32]),
                               st.just(base64.b64encode(bytes.fromhex(BENCH_TRACE)).decode()), _json_scalars))
_times = _mostly(st.integers(0, 2**63 - 1).map(str),
                 st.one_of(st.integers(-(2**64), 2**64), st.sampled_from(["", "0", " 12", "1_0", "9" * 25, "-5", "x", "٣"]), _json_scalars))
_any_value = _mostly(
    st.one_of(st.text(max_size=5).map(lambda v: {"stringValue": v}), st.booleans().map(lambda v: {"boolValue": v}),
              st.integers(-(2**63), 2**64).map(lambda v: {"intValue": str(v)}), st.integers(-(2**63), 2**63).map(lambda v: {"intValue": v}),
              st.floats(allow_nan=False, allow_infinity=False).map(lambda v: {"doubleValue": v}),
              st.binary(max_size=4).map(lambda v: {"bytesValue": base64.b64encode(v).decode()}),
              st.lists(st.just({"intValue": "3"}) | st.just({"stringValue": "é"}), max_size=2).map(lambda vs: {"arrayValue": {"values": vs}}),
              st.text(max_size=3).map(lambda k: {"kvlistValue": {"values": [{"key": k, "value": {"boolValue": True}}]}})),
    st.one_of(st.dictionaries(st.sampled_from(["stringValue", "boolValue", "intValue", "doubleValue", "bytesValue", "arrayValue",
                                               "kvlistValue", "other"]), st.one_of(_json, _times), max_size=2),
              _json_scalars))
_key_values = st.lists(_mostly(
    st.fixed_dictionaries({"key": st.sampled_from(["error", "http.route", "k", "ключ"]) | st.text(max_size=4), "value": _any_value}),
    st.one_of(st.fixed_dictionaries({}, optional={"key": _json_scalars, "value": _any_value}), _json_scalars)), max_size=4)
_attributes = _mostly(_key_values, st.none() | _json_scalars)
_events = st.lists(st.fixed_dictionaries({"name": _mostly(st.text(max_size=4), _json_scalars)},
                                         optional={"timeUnixNano": _times, "attributes": _attributes}), max_size=3)
_links = st.lists(st.fixed_dictionaries({"traceId": _trace_ids, "spanId": _ids}), max_size=2)
_status = _mostly(st.fixed_dictionaries({}, optional={"code": st.sampled_from([0, 1, 2, "STATUS_CODE_ERROR", "STATUS_CODE_OK"]),
                                                      "message": st.text(max_size=4)}),
                  st.one_of(st.none(), st.fixed_dictionaries({}, optional={
                      "code": st.sampled_from([3, "STATUS_CODE_UNSET", 2.0, 1.0, True, False]) | _json_scalars,
                      "message": _json_scalars}), _json_scalars))
_spans = st.fixed_dictionaries(
    {"traceId": _trace_ids, "spanId": _ids, "startTimeUnixNano": _times},
    optional={"parentSpanId": _ids, "name": _mostly(st.sampled_from(["GET /", "op", ""]), _json_scalars),
              "kind": _mostly(st.integers(0, 5), st.integers(-1, 7) | st.sampled_from(["SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "server"])
                              | _json_scalars),
              "endTimeUnixNano": _times, "status": _status, "attributes": _attributes, "events": _mostly(_events, _json_scalars),
              "links": _mostly(_links, _json_scalars), "flags": _json, "droppedAttributesCount": _json})
_resources = st.one_of(st.none(), st.fixed_dictionaries({}, optional={"attributes": _attributes, "droppedAttributesCount": _json}),
                       st.builds(lambda name: {"attributes": [{"key": "service.name", "value": name}]}, _any_value),
                       st.sampled_from(["a", "b"]).map(lambda n: {"attributes": [{"key": "service.name", "value": {"stringValue": n}}]}))
_scopes = st.fixed_dictionaries({}, optional={"scope": _json, "spans": _mostly(st.lists(_spans, min_size=1, max_size=4), st.none() | st.lists(_json))})
_resource_spans = st.fixed_dictionaries({"scopeSpans": _mostly(st.lists(_scopes, min_size=1, max_size=3), st.none())},
                                       optional={"resource": _resources, "schemaUrl": _json})
_answers = _mostly(
    st.builds(lambda rs: {"result": {"resourceSpans": rs}}, st.lists(_resource_spans, min_size=1, max_size=4)),
    st.one_of(st.fixed_dictionaries({"result": st.fixed_dictionaries({}, optional={"resourceSpans": st.none() | st.lists(_resource_spans, max_size=2)})}),
              _json))

TAKEN: list[int] = []  # spans of each generated answer the native code took (the last test checks there were many)


@given(answer=_answers, ascii_only=st.booleans())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_generated_answers_decode_the_same(answer: Any, ascii_only: bool) -> None:
    body = json.dumps(answer, ensure_ascii=ascii_only).encode()
    if assert_same(body, BENCH_TRACE):
        TAKEN.append(len(_native_spans(body, BENCH_TRACE) or ()))


def test_the_generated_answers_were_mostly_decoded_natively() -> None:
    """Run after the generated ones (same module, in order): they tested the native decode, not only its hand-back."""
    if not TAKEN:
        pytest.skip("run with test_generated_answers_decode_the_same")
    assert sum(1 for spans in TAKEN if spans) >= 60, TAKEN


def _held(obj: Any) -> list[Any]:
    if isinstance(obj, tuple):
        return list(obj)
    return [getattr(obj, f.name) for f in dataclasses.fields(obj)]


def test_native_spans_are_left_to_the_collector_only_when_they_hold_something_it_tracks() -> None:
    """The native decode untracks a Span, SpanEvent, SpanLink or tuple of them whose fields the collector cannot
    reach through (strs, ints, None, dicts of those): no cycle can pass through it. Any tracked field keeps it tracked."""
    import gc

    plain = _native_spans(otlp_trace(50), BENCH_TRACE)
    assert plain and not any(gc.is_tracked(span) for span in plain)
    checked = 0
    answers = [bodies(300, 10, 10)[0], *(orjson.dumps({"result": data}) for _, data in FIXTURE_TRACES)]
    for body in answers:
        for trace_hex in (TRACE_ID, BENCH_TRACE, *sorted(_ids_in(orjson.loads(body)))):
            spans = _native_spans(body, trace_hex)
            if spans is None:
                continue
            for span in spans:
                for obj in (span, span.events, span.links, *span.events, *span.links):
                    if obj == ():
                        continue
                    assert gc.is_tracked(obj) == any(gc.is_tracked(value) for value in _held(obj)), obj
                    checked += 1
    assert checked > 1000
