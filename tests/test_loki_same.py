"""The Loki parse gives what it gave before the loki-parse round (tests/reference/loki_v1.py: msgspec's envelope, then
the native reader per stream): the same LogLines, entry counts and errors, now that the usual answer is read natively
in one pass (`LokiLines.answer`) and everything else goes the old way.

Answers are generated as JSON text so that what a dict cannot hold is there too: keys in any order (`values` before
`stream`, `encodingFlags` after `result`, `status` last), keys twice, unknown keys holding what msgspec and serde_json
judge differently (lone surrogate escapes, invalid UTF-8, 1e999, deep nesting), envelopes of the wrong types; entries
of every shape tests/test_native.py generates (metadata, non-ASCII, escapes, odd timestamps), and duplicate entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator.config import LokiSettings
from correlator.sources import _native, loki
from tests.reference import loki_v1
from tests.test_native import _ENTRIES, _LABELS, FIXTURE_ANSWERS, MANY, OTHER, SETTINGS

pytestmark = pytest.mark.skipif(_native.MODULE is None and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
                                reason="correlator_native is not installed (pip install ./native)")


@dataclass(frozen=True)
class Raw:
    """JSON text written as it is."""

    text: bytes


@dataclass(frozen=True)
class Obj:
    """A JSON object as (key, value) pairs: any order, a key twice."""

    pairs: tuple[tuple[str, Any], ...]


def dump(node: Any, ascii_only: bool) -> bytes:
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Obj):
        return b"{" + b", ".join(dump(k, ascii_only) + b": " + dump(v, ascii_only) for k, v in node.pairs) + b"}"
    if isinstance(node, list):
        return b"[" + b",".join(dump(v, ascii_only) for v in node) + b"]"
    return json.dumps(node, ensure_ascii=ascii_only).encode()


def _outcome(parse: Any, raw: bytes, settings_: LokiSettings) -> Any:
    try:
        return parse(raw, settings_)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        return type(exc), str(exc)


def assert_same(raw: bytes, settings_: LokiSettings = SETTINGS) -> Any:
    new = _outcome(loki.parse_streams_body, raw, settings_)
    assert new == _outcome(loki_v1.parse_streams_body, raw, settings_)
    return new


# What msgspec and serde_json skip differently, and what both take.
ODD = st.sampled_from([
    Raw(b'"\\ud800"'), Raw(b'"\\uDBFF x"'), Raw(b'"\\ud83c\\udf89"'), Raw(b'"\xff\xfe"'), Raw(b"1e999"), Raw(b"-0.0"),
    Raw(b'[1, {"x": null, "y": [true, false]}]'), Raw(b"[" * 200 + b"]" * 200), Raw(b'"\\\\ud800"'), Raw(b'"\\u0000"'),
    Raw(b'{"a": "\\ud800"}'), Raw(b"{}"), Raw(b"null"), Raw(b'"\xc3\xa9"'), 5, "x",
])
_UNKNOWN = st.sampled_from(["stats", "extra", "warnings", "st\\u0061ts"])


def _obj(required: st.SearchStrategy[list[tuple[str, Any]]]) -> st.SearchStrategy[Obj]:
    """The pairs in any order, perhaps an unknown key with an odd value, perhaps one key twice."""
    def build(pairs: list[tuple[str, Any]], extra: list[tuple[str, Any]], twice: bool, data: st.DataObject) -> Obj:
        pairs = pairs + extra
        if twice and pairs:
            pairs.append(data.draw(st.sampled_from(pairs)))
        return Obj(tuple(data.draw(st.permutations(pairs))))
    return st.builds(build, required, st.lists(st.tuples(_UNKNOWN, ODD), max_size=1), st.booleans(), st.data())


def _some(*pairs: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Each pair present or not (mostly present)."""
    return st.tuples(*(st.one_of(p.map(lambda v: [v]), st.just([])) if i else p.map(lambda v: [v])
                       for i, p in enumerate(pairs))).map(lambda parts: [x for part in parts for x in part])


_VALUES = st.one_of(st.lists(_ENTRIES, max_size=5), st.none(), st.just(5))
_STREAM: st.SearchStrategy[Any] = st.one_of(
    _obj(st.tuples(st.one_of(st.just([]), _LABELS.map(lambda d: [("stream", d)])),
                   st.one_of(st.just([]), _VALUES.map(lambda v: [("values", v)]))).map(lambda t: t[0] + t[1])),
    st.sampled_from([5, None, [], "s"]),
)


def _duplicated(streams: list[Any]) -> list[Any]:
    return streams + streams[:1]  # the same stream (and entries) twice in one answer


_RESULT = st.one_of(st.lists(_STREAM, max_size=3), st.lists(_STREAM, min_size=1, max_size=2).map(_duplicated), st.none(), st.just(5))
_DATA: st.SearchStrategy[Any] = st.one_of(
    _obj(st.tuples(
        st.one_of(st.just([]), st.sampled_from(["streams", "streams", "matrix", None, 5]).map(lambda v: [("resultType", v)])),
        st.one_of(st.just([]), st.sampled_from([["categorize-labels"], [], None, ["x", "categorize-labels"], "x", [1]])
                  .map(lambda v: [("encodingFlags", v)])),
        st.one_of(_RESULT.map(lambda v: [("result", v)]), st.just([]))).map(lambda t: t[0] + t[1] + t[2])),
    st.sampled_from([None, 5, []]),
)
_ANSWER: st.SearchStrategy[Any] = st.one_of(
    _obj(st.tuples(st.sampled_from(["success"] * 6 + ["error", None, 5]).map(lambda v: [("status", v)]),
                   _DATA.map(lambda v: [("data", v)])).map(lambda t: t[0] + t[1])),
    st.sampled_from([[], "x", None]),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ANSWER, st.booleans(), st.sampled_from([SETTINGS, OTHER, MANY]))
def test_generated_answers_parse_as_before(answer: Any, ascii_only: bool, settings_: LokiSettings) -> None:
    assert_same(dump(answer, ascii_only), settings_)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_LABELS, st.lists(_ENTRIES, min_size=1, max_size=6)), min_size=1, max_size=3), st.booleans(),
       st.booleans(), st.sampled_from([SETTINGS, OTHER, MANY]))
def test_usual_answers_parse_as_before(streams: list[tuple[dict[str, str], list[Any]]], categorized: bool, values_first: bool,
                                       settings_: LokiSettings) -> None:
    """Well-formed answers (the shape Loki writes, or the values before the labels): the same lines as before."""
    data: list[tuple[str, Any]] = [("resultType", "streams"), ("result", [
        Obj((("values", v), ("stream", s)) if values_first else (("stream", s), ("values", v))) for s, v in streams])]
    if categorized:
        data.insert(1, ("encodingFlags", ["categorize-labels"]))
    raw = dump(Obj((("status", "success"), ("data", Obj((*data, ("stats", Obj((("summary", {"bytes": 1}),)))))))), False)
    assert_same(raw, settings_)


def _variants(answer: dict[str, Any]) -> list[bytes]:
    """A recorded answer as Loki writes it, indented, ASCII-escaped, and with its keys in reverse order."""
    def reverse(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: reverse(node[k]) for k in reversed(list(node))}
        return [reverse(v) for v in node] if isinstance(node, list) else node
    return [orjson.dumps(answer), json.dumps(answer, indent=1).encode(), json.dumps(answer, ensure_ascii=True).encode(),
            orjson.dumps(reverse(answer))]


@pytest.mark.parametrize(("name", "answer"), FIXTURE_ANSWERS, ids=[n for n, _ in FIXTURE_ANSWERS])
@pytest.mark.parametrize("settings_", [SETTINGS, OTHER, MANY], ids=["default", "other-fields", "many-firsts"])
def test_every_recorded_answer_parses_as_before(name: str, answer: dict[str, Any], settings_: LokiSettings) -> None:
    for raw in _variants(answer):
        assert_same(raw, settings_)


def _no_two_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the two-pass way ran")
    monkeypatch.setattr(loki, "_two_pass_lines", refuse)
    monkeypatch.setattr(loki, "_python_lines", refuse)


@pytest.mark.parametrize(("name", "answer"), [(n, a) for n, a in FIXTURE_ANSWERS if a.get("status") == "success"],
                         ids=[n for n, a in FIXTURE_ANSWERS if a.get("status") == "success"])
def test_recorded_answers_are_read_in_one_pass(name: str, answer: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    expected = loki_v1.parse_streams_body(orjson.dumps(answer), SETTINGS)
    _no_two_pass(monkeypatch)
    assert loki.parse_streams_body(orjson.dumps(answer), SETTINGS) == expected


def test_the_bench_answer_is_read_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.fake_backends import loki_streams

    raw = loki_streams(300)
    expected = loki_v1.parse_streams_body(raw, SETTINGS)
    _no_two_pass(monkeypatch)
    assert loki.parse_streams_body(raw, SETTINGS) == expected


@pytest.mark.parametrize("raw", [
    b'{"data": {"result": [{"stream": {"service_name": "a"}, "values": [["1", "x"]]}], "resultType": "streams"}, "status": "success"}',
    b'{"status": "success", "data": {"result": [{"values": [["1", "x"]], "stream": {"service_name": "a"}}]}}',
])
def test_other_key_orders_are_read_in_one_pass(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = loki_v1.parse_streams_body(raw, SETTINGS)
    _no_two_pass(monkeypatch)
    assert loki.parse_streams_body(raw, SETTINGS) == expected


@pytest.mark.parametrize("raw", [
    b'{"status": "success", "data": {"result": [], "stats": {"x": "\\ud800"}}}',  # msgspec refuses it: NotJson
    b'{"status": "success", "status": "success", "data": {"result": []}}',
    b'{"status": "success", "data": {"result": [], "encodingFlags": ["categorize-labels"]}}',
    b'{"status": "success", "data": {"result": [{"stream": {"a": "\\ud800"}}]}}',
])
def test_odd_answers_go_the_two_pass_way(raw: bytes) -> None:
    assert _native.MODULE is not None and _native.MODULE.LokiLines.answer is not None
    assert_same(raw)


_TRACE_HEX = "4bf92f3577b34da6a3ce929d0e0e4736"


def _fetch(source_class: Any, answers: list[list[Any]]) -> Any:
    import asyncio

    import httpx

    from correlator.ids import parse_trace_id
    from correlator.model import Window

    source = source_class(SETTINGS, httpx.AsyncClient())

    async def lookups(*_args: Any) -> tuple[list[tuple[list[Any], bool]], list[Any]]:
        return [(lines, False) for lines in answers], []
    source._lookups = lookups
    return asyncio.run(source.fetch(parse_trace_id(_TRACE_HEX), Window(0, 10), ["svc"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=8), min_size=1, max_size=3), st.data())
def test_fetch_merges_as_before(picks: list[list[tuple[int, bool]]], data: st.DataObject) -> None:
    """`fetch` on lookups returning the same line objects (as a shared parse would), equal copies, lines that fail the
    trace check and lines of one ID that differ: the same lines, order and merged fields as before."""
    from dataclasses import replace as copy

    from correlator.model import LogLine

    texts = [f"trace_id={_TRACE_HEX} ok", f"x{_TRACE_HEX}9 longer run", "no id here"]
    metadata = [{}, {"trace_id": _TRACE_HEX}, {"detected_level": "info"}, {"trace_id": "ffff" * 8}]
    pool = [LogLine(f"log-{i % 3}", i % 2, data.draw(st.sampled_from(texts)), "svc", data.draw(st.sampled_from([None, "info"])),
                    {}, data.draw(st.sampled_from(metadata)), data.draw(st.sampled_from([None, "00f067aa0ba902b7"])))
            for i in range(6)]
    answers = [[pool[i] if same else copy(pool[i]) for i, same in lookup] for lookup in picks]
    new, old = _fetch(loki.LokiSource, answers), _fetch(loki_v1.LokiSource, answers)
    assert new == old
    assert [line.metadata for line in new.value] == [line.metadata for line in old.value]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_LABELS, st.lists(_ENTRIES, min_size=1, max_size=5)), min_size=1, max_size=3),
       st.lists(st.tuples(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4)), max_size=8), st.booleans(), st.booleans()),
                min_size=2, max_size=3),
       st.sampled_from([SETTINGS, OTHER, MANY]))
def test_answers_sharing_a_memo_are_read_as_alone(pool: list[tuple[dict[str, str], list[Any]]],
                                                  answers: list[tuple[list[tuple[int, int]], bool, bool]],
                                                  settings_: LokiSettings) -> None:
    """A fetch's lookups share the entries they read (`_new_memo`): answers picking the same entries from the same or other
    streams (other labels, the other answer shape, another serialisation) give the lines each gives alone."""
    memo = loki._new_memo()
    assert memo is not None
    for picks, categorized, ascii_only in answers:
        streams: dict[int, list[Any]] = {}
        for stream, entry in picks:
            _labels, entries = pool[stream % len(pool)]
            streams.setdefault(stream % len(pool), []).append(entries[entry % len(entries)])
        data: list[tuple[str, Any]] = [("resultType", "streams"), ("result", [
            Obj((("stream", pool[i][0]), ("values", values))) for i, values in streams.items()])]
        if categorized:
            data.insert(1, ("encodingFlags", ["categorize-labels"]))
        raw = dump(Obj((("status", "success"), ("data", Obj(tuple(data))))), ascii_only)
        new = _outcome(lambda raw_, s: loki.parse_streams_body(raw_, s, memo), raw, settings_)
        assert new == _outcome(loki_v1.parse_streams_body, raw, settings_)


def test_a_fetchs_lookups_read_a_shared_entry_once() -> None:
    """The memo is used: the second answer's lines are the first's objects (what makes the merge's checks cheap)."""
    from bench.fake_backends import loki_streams

    memo = loki._new_memo()
    first = loki.parse_streams_body(loki_streams(20), SETTINGS, memo)[0]
    second = loki.parse_streams_body(loki_streams(20), SETTINGS, memo)[0]
    assert len(memo) == 20
    assert all(a is b for a, b in zip(first, second, strict=True))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="0123456789abcdefABCDEFxyz", max_size=40), st.sampled_from(["", "a", "0", "٣", "é"])))
def test_quote_writes_what_json_writes(value: str) -> None:
    """`logql.quote`'s shortcut for letters and digits writes what `json.dumps` writes (and refuses what it refused)."""
    from correlator.logql import quote

    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(ValueError, match="valid UTF-8"):
            quote(value)
        return
    assert quote(value) == json.dumps(value, ensure_ascii=False)
