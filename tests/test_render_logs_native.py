"""The native `logs` list (native/src/logs_json.rs) is byte for byte what orjson writes for `render._logs_python`.

Differential, as tests/test_render_spans_native.py does for the spans: every Loki fixture answer parsed and placed,
hypothesis-generated lines with nasty strings (control characters, quotes, non-BMP, lone surrogates) and mappings
of every shape (empty, non-str keys, str subclasses, values orjson alone writes), the bench's correlation and the
10k golden body. Where the native code hands a list back the answer must still be Python's; where orjson refuses
a string (a lone surrogate) the error must be orjson's. The text answer and the page, which read the entries they
show through `render.log_entries`, must come out the same from a body holding the JSON.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator import render
from correlator.config import LokiSettings
from correlator.model import Confidence, Exemplar, LogLine, Match, Placement
from correlator.sources import _native, loki
from tests.test_native import FIXTURE_ANSWERS

pytestmark = pytest.mark.skipif(
    not hasattr(_native.MODULE, "render_logs_json") and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
    reason="correlator_native is not installed, or built before logs_json.rs (pip install ./native)")


class _Text(str):
    """A str subclass: orjson writes it as a str, the native writer hands it to orjson."""


def _python_bytes(lines: tuple[LogLine, ...], places: tuple[Placement, ...]) -> bytes:
    return orjson.dumps(render._logs_python(lines, places), option=orjson.OPT_NON_STR_KEYS)


def _native_bytes(lines: tuple[LogLine, ...], places: tuple[Placement, ...]) -> bytes:
    written = render._logs_json(lines, places)
    assert written is not None, "the native render handed the lines back"
    return orjson.dumps(written)


def _same(lines: tuple[LogLine, ...], places: tuple[Placement, ...]) -> None:
    assert _native_bytes(lines, places) == _python_bytes(lines, places)


# Every character class orjson treats apart: controls (short and \u forms), quote, backslash, DEL, the JSON-safe
# but JS-unsafe separators, 2-, 3- and 4-byte UTF-8, and text long enough for the eight-byte scan and its tail.
_NASTY = st.sampled_from(['"', "\\", "\x00", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1f", "\x7f", "/", "\u2028",
                          "é", "€", "😀", "\ud7ff", "\ue000", "\U0010ffff", "abcdefgh", "level=info msg=\"x\""])
_TEXT = st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6) | _NASTY, max_size=8).map("".join)
_VALUES = st.one_of(_TEXT, st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                    st.just(_Text("sub")), st.lists(_TEXT, max_size=2), st.dictionaries(_TEXT, _TEXT, max_size=2))
_KEYS = _TEXT | st.just(_Text("subkey"))
_MAPPINGS = st.one_of(
    st.dictionaries(_KEYS, _TEXT, max_size=4),
    st.dictionaries(_KEYS, _VALUES, max_size=3),
    st.dictionaries(_TEXT | st.integers(-3, 3) | st.none(), _TEXT, max_size=3),  # OPT_NON_STR_KEYS' rules
    st.dictionaries(_TEXT, _TEXT, max_size=3).map(MappingProxyType),
)
_STAMPS = st.one_of(st.integers(-(10**18), 2**62), st.integers(1795572505 * 10**9, 1795572509 * 10**9), st.just(0), st.just(-1))
_LINES = st.builds(LogLine, _TEXT, _STAMPS, _TEXT, st.one_of(st.none(), _TEXT, st.just(_Text("svc"))),
                   st.one_of(st.none(), st.sampled_from(["info", "error"]), _TEXT), _MAPPINGS, _MAPPINGS,
                   st.one_of(st.none(), st.just("00f067aa0ba902b7")))
_PLACES = st.builds(Placement, st.one_of(st.none(), st.sampled_from(["00f067aa0ba902b7", "0000000000000001"])),
                    st.sampled_from(list(Match)), st.one_of(st.none(), st.sampled_from(list(Confidence))))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_LINES, _PLACES), max_size=10), st.randoms(use_true_random=False))
def test_generated_lines_are_written_as_orjson_writes_them(pairs: list[tuple[LogLine, Placement]], rng: Any) -> None:
    # Lines sharing their mapping objects (as a stream's lines share its labels): each is written once and copied.
    shared = [(LogLine(line.id, line.timestamp_ns, line.line, line.service, line.level,
                       rng.choice([line.labels, pairs[0][0].labels]), rng.choice([line.metadata, pairs[0][0].labels]),
                       line.span_id), place) for line, place in pairs]
    for rows in (pairs, shared):
        _same(tuple(p[0] for p in rows), tuple(p[1] for p in rows))


def test_a_string_orjson_refuses_fails_the_same_way() -> None:
    """A lone surrogate (in the line, a label value, a metadata key): orjson's error, never other bytes."""
    place = (Placement(None, Match.TRACE),)
    for line in (LogLine("log-1", 1, "bad \ud800 line"), LogLine("log-1", 1, "x", labels={"k": "\udfff"}),
                 LogLine("log-1", 1, "x", metadata={"\ud83d": "v"})):
        with pytest.raises(orjson.JSONEncodeError) as python_error:
            _python_bytes((line,), place)
        with pytest.raises(orjson.JSONEncodeError) as native_error:
            render._logs_json((line,), place)
        assert str(native_error.value) == str(python_error.value)


def test_lines_the_native_code_hands_back_are_rendered_by_python() -> None:
    """A timestamp beyond 64 bits, an unknown match: None (the body then holds Python's list); lengths differ: None."""
    wide = LogLine("log-1", 2**70, "x")
    assert render._logs_json((wide,), (Placement(None, Match.TRACE),)) is None
    odd_match = Placement(None, "nope")  # type: ignore[arg-type]
    assert render._logs_json((LogLine("log-1", 1, "x"),), (odd_match,)) is None
    assert render._logs_json((LogLine("log-1", 1, "x"),), ()) is None
    assert render._logs_json([LogLine("log-1", 1, "x")], [Placement(None, Match.TRACE)]) is None  # not tuples


def _placed(lines: tuple[LogLine, ...]) -> tuple[Placement, ...]:
    """Placements of every kind over the lines (the render does not care where they came from)."""
    kinds = [Placement(None, Match.TRACE), Placement("00f067aa0ba902b7", Match.SPAN_ID), Placement("0000000000000001", Match.TIME),
             Placement("0000000000000001", Match.INFERRED, Confidence.LOW)]
    return tuple(kinds[i % len(kinds)] for i in range(len(lines)))


@pytest.mark.parametrize(("name", "answer"), FIXTURE_ANSWERS, ids=[n for n, _ in FIXTURE_ANSWERS])
def test_every_fixture_answer_renders_the_same(name: str, answer: dict[str, Any]) -> None:
    for settings_ in (LokiSettings(), LokiSettings(service_label="app")):
        try:
            parsed, _ = loki.parse_streams_body(orjson.dumps(answer), settings_)
        except (ValueError, TypeError, IndexError, AttributeError):
            continue  # an answer the parse refuses has no lines to render
        lines = tuple(parsed)
        _same(lines, _placed(lines))


def _bench_outcome(spans: int, lines: int) -> Any:
    from bench.fake_backends import exemplars, loki_streams, otlp_trace
    from correlator.config import load_settings
    from correlator.correlate import Correlator
    from correlator.ids import parse_trace_id
    from correlator.model import SourceReport, SourceStatus, Window
    from correlator.sources import SourceResult
    from correlator.sources.jaeger import parse_otlp_answer
    from correlator.sources.prometheus import parse_exemplars

    settings_ = load_settings(environ={})
    tid = parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
    ok = SourceReport(SourceStatus.OK, 1.0)
    trace = parse_otlp_answer(otlp_trace(spans), tid.hex)
    assert trace is not None
    logs, _ = loki.parse_streams_body(loki_streams(lines), settings_.loki)
    found, _ = parse_exemplars(orjson.loads(exemplars(spans // 5)), settings_.prometheus.trace_id_labels,
                               settings_.prometheus.span_id_labels)
    return settings_, Correlator(settings_, None, None, None)._assemble(  # type: ignore[arg-type]
        tid, Window(trace.start_ns, trace.end_ns), (ok, SourceResult(trace)), (ok, SourceResult(tuple(logs))),
        (ok, SourceResult(tuple(found))))


def test_the_bench_body_with_lines_as_json_is_the_same_and_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """The body the service writes (lines as JSON) equals the list body's bytes, and no dict per line was made."""
    settings_, outcome = _bench_outcome(300, 3000)
    expected = orjson.dumps(render.correlation_body(outcome, settings_), option=orjson.OPT_NON_STR_KEYS)

    def refuse(*args: Any) -> Any:
        raise AssertionError("a list of dicts was made for the lines")

    monkeypatch.setattr(render, "_logs", refuse)
    body = render.correlation_body(outcome, settings_, spans_as_json=True, lines_as_json=True)
    assert isinstance(body["logs"], orjson.Fragment)
    assert orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS) == expected


def test_the_text_answer_and_the_page_read_the_same_entries_from_a_body_of_json() -> None:
    """render.log_entries: the text shows the first lines and the count, the page the unplaced lines, as from the list."""
    from correlator.report import render_text
    from correlator.web.view import build_page

    settings_, outcome = _bench_outcome(20, 400)  # 400 lines on 20 spans' services: some placed, some not
    listed = render.correlation_body(outcome, settings_)
    written = render.correlation_body(outcome, settings_, lines_as_json=True)
    assert isinstance(written["logs"], orjson.Fragment)
    assert render_text(outcome, written) == render_text(outcome, listed)
    assert "… 350 more" in render_text(outcome, written)
    page_listed, page_written = build_page(listed, outcome, settings_), build_page(written, outcome, settings_)
    assert page_written.unplaced_logs == page_listed.unplaced_logs
    assert page_written.data == page_listed.data
    entries = render.log_entries(written, outcome.correlation)
    assert list(entries) == listed["logs"] and entries[-3:] == listed["logs"][-3:] and entries[7] == listed["logs"][7]


def test_the_10k_body_with_lines_as_json_is_the_golden_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 10k-span golden body (3,000 lines of every kind the span mix has) with spans and lines as JSON."""
    import lzma

    from tests import spanbody
    from tests.spanmix import TRACE_ID, bodies
    from tests.test_spans_identical import GOLDEN, _without_sources

    whole = render.correlation_body
    monkeypatch.setattr(render, "correlation_body",
                        lambda outcome, settings: whole(outcome, settings, spans_as_json=True, lines_as_json=True))
    got = spanbody.render_body(*bodies(10_000, 3000, 1000), TRACE_ID)
    assert _without_sources(got) == _without_sources(lzma.decompress(GOLDEN.read_bytes()))


def test_an_older_extension_without_the_logs_writer_leaves_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel built before logs_json.rs: the body holds the list, and the same bytes come out."""
    from types import SimpleNamespace

    settings_, outcome = _bench_outcome(20, 100)
    expected = orjson.dumps(render.correlation_body(outcome, settings_), option=orjson.OPT_NON_STR_KEYS)
    monkeypatch.setattr(_native, "MODULE", SimpleNamespace(render_logs=_native.MODULE.render_logs))  # type: ignore[union-attr]
    body = render.correlation_body(outcome, settings_, lines_as_json=True)
    assert isinstance(body["logs"], list)
    assert orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS) == expected


def test_native_lines_are_left_to_the_collector_only_when_they_hold_something_it_tracks() -> None:
    """The native parse untracks a LogLine whose fields the collector cannot reach through (strs, ints, dicts of strs):
    no cycle can pass through such a line. Any field it tracks keeps the line tracked."""
    import dataclasses
    import gc

    from bench.fake_backends import loki_streams

    lines, _ = loki.parse_streams_body(loki_streams(50), LokiSettings())
    assert lines and not any(gc.is_tracked(line) for line in lines)
    for _name, answer in FIXTURE_ANSWERS:
        try:
            parsed, _ = loki.parse_streams_body(orjson.dumps(answer), LokiSettings())
        except (ValueError, TypeError, IndexError, AttributeError):
            continue
        for line in parsed:
            fields = [getattr(line, f.name) for f in dataclasses.fields(line)]
            assert gc.is_tracked(line) == any(gc.is_tracked(value) for value in fields), line


def test_lines_far_longer_than_the_writer_guessed_are_written_whole() -> None:
    """The writer's buffer is sized for ~320 bytes a line and grows in place: long lines, escapes and big mappings
    (each written once, then copied from the buffer as it moves) come out whole; no line at all is `[]`."""
    big = {f"k{i}": "v\n" * 50 for i in range(200)}
    lines = tuple(LogLine(f"log-{i}", 1_795_572_505_000_000_000 + i, ('x"\\\n' * 40_000)[: 10 ** (i % 6)], "svc", "info",
                          big, big if i % 2 else {}) for i in range(12))
    _same(lines, _placed(lines))
    assert _native_bytes((), ()) == b"[]"


_EXEMPLARS = st.builds(
    Exemplar, _TEXT, _TEXT, _MAPPINGS, _MAPPINGS,
    st.one_of(st.floats(allow_nan=True), st.integers(-2**63, 2**64 - 1), st.sampled_from([float("inf"), -float("inf"), -0.0])),
    _STAMPS, st.just("1" * 32), st.one_of(st.none(), st.just("00f067aa0ba902b7")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_EXEMPLARS, _PLACES), max_size=8))
def test_the_exemplars_loop_makes_each_exemplars_dict(pairs: list[tuple[Exemplar, Placement]]) -> None:
    """`render._exemplars` (one loop, seconds' texts cached) against `_exemplar` per item: equal dicts, same bytes."""
    exemplars, places = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    one_by_one = [render._exemplar(e, p) for e, p in pairs]
    together = render._exemplars(exemplars, places)
    assert repr(together) == repr(one_by_one)  # repr: NaN != NaN, and -0.0 == 0.0
    assert orjson.dumps(together, option=orjson.OPT_NON_STR_KEYS) == orjson.dumps(one_by_one, option=orjson.OPT_NON_STR_KEYS)
