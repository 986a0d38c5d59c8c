"""The native Loki parse (native/, Rust) gives exactly the LogLines of the Python one, or hands the answer back.

Differential: every Loki answer under tests/fixtures/ and generated answers (text, logfmt and JSON
bodies, escapes, odd whitespace, metadata of every shape, both answer shapes, other field names)
go through both paths; the lines (IDs included: clients refer to them), the entry counts or the
errors must be equal. CI sets CORRELATOR_REQUIRE_NATIVE=1 (scripts/test): there the extension
must be importable and really used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator import idformats, render
from correlator.config import LokiSettings
from correlator.model import Confidence, LogLine, Match, Placement
from correlator.sources import _native, loki
from tests.conftest import FIXTURES

pytestmark = pytest.mark.skipif(_native.MODULE is None and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
                                reason="correlator_native is not installed (pip install ./native)")

SETTINGS = LokiSettings()
# Other names than the defaults: one with a dot, one a prefix of another, JSONPaths elsewhere.
OTHER = replace(SETTINGS, span_id_fields=("sid", "span.ident", "s"), level_fields=("lvl", "lv", "sev.text"),
                span_id_jsonpaths=("$.ctx.sid",), service_label="app")
# Names starting with two and with four different bytes (the native scan's other two ways of finding candidates).
MANY = replace(SETTINGS, span_id_fields=("span_id", "sid", "x_span", "trace.span", "psid", "spanId"), level_fields=("level", "severity"))


def _answers(node: Any) -> Iterator[dict[str, Any]]:
    """Every query_range answer (`{"status": …, "data": {"result": […]}}`) inside a fixture, wherever it sits."""
    if isinstance(node, dict):
        if "status" in node and isinstance(node.get("data"), dict) and "result" in node["data"]:
            yield node
        for value in node.values():
            yield from _answers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _answers(value)


FIXTURE_ANSWERS = [(f"{path.relative_to(FIXTURES)}#{i}", answer)
                   for path in sorted(FIXTURES.rglob("*.json")) if "loki" in str(path)
                   for i, answer in enumerate(_answers(json.loads(path.read_text())))]


def _outcome(parse: Any, raw: bytes, settings_: LokiSettings) -> Any:
    try:
        return parse(raw, settings_)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        return type(exc), str(exc)


def assert_same(raw: bytes, settings_: LokiSettings = SETTINGS) -> Any:
    """Both paths on `raw`: the same result (or error); returns what the native path alone gave (None: handed back)."""
    expected = _outcome(loki._python_lines, raw, settings_)
    assert _outcome(loki.parse_streams_body, raw, settings_) == expected
    try:
        return loki._native_lines(raw, settings_)
    except (ValueError, TypeError, IndexError, AttributeError):
        return None


def test_the_fixtures_hold_loki_answers() -> None:
    assert len(FIXTURE_ANSWERS) >= 14


@pytest.mark.parametrize(("name", "answer"), FIXTURE_ANSWERS, ids=[n for n, _ in FIXTURE_ANSWERS])
@pytest.mark.parametrize("settings_", [SETTINGS, OTHER, MANY], ids=["default", "other-fields", "many-firsts"])
def test_every_fixture_answer_parses_the_same(name: str, answer: dict[str, Any], settings_: LokiSettings) -> None:
    for raw in (orjson.dumps(answer), json.dumps(answer, indent=1).encode(), json.dumps(answer, ensure_ascii=True).encode()):
        native = assert_same(raw, settings_)
        if answer.get("status") == "success" and answer["data"].get("result"):
            # A well-formed answer is read natively (not merely handed back), lines equal to Python's.
            assert native is not None and native == loki._python_lines(raw, settings_)


def test_the_bench_answer_is_read_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI really runs the native path: the bench's answer parses with the Python path made to fail."""
    from bench.fake_backends import loki_streams

    raw = loki_streams(500)
    expected = loki._python_lines(raw, SETTINGS)

    def no_python(*_: object) -> None:
        raise AssertionError("the Python parse ran")

    monkeypatch.setattr(loki, "_python_lines", no_python)
    assert loki.parse_streams_body(raw, SETTINGS) == expected
    assert expected[1] == 500


def test_ids_are_the_python_ids() -> None:
    for ts, prefix, line in [(1, "|None|", ""), (1795572505053254099, "|svc|", "héllo 🎉 \u2028"), (0, "|a|b|", "x" * 500)]:
        assert _native.MODULE.line_id_of(ts, prefix, line) == loki._line_id(f"{ts}{prefix}{line}")


def test_ids_across_the_hash_block_and_stack_buffer_sizes() -> None:
    """The native ID joins its three parts on a 256-byte stack buffer (a heap one beyond) and hashes them in one call:
    every joined length from 0 to 300 bytes (BLAKE2b's 128-byte blocks, the buffer's edge), ASCII and multi-byte."""
    module = _native.MODULE
    assert module is not None
    for prefix in ("|svc|", "|é|"):
        for length in range(301):
            for line in ("a" * length, ("é" * length)[: max(length - len(prefix), 0)]):
                ts = 1795572505053254099
                assert module.line_id_of(ts, prefix, line) == loki._line_id(f"{ts}{prefix}{line}"), (prefix, length)


def test_lines_keep_their_text_ascii_or_not() -> None:
    """ASCII lines are made into strs without a UTF-8 decode: the same text (and kind of str) as Python's parse."""
    texts = ["", "a", "plain ascii level=warn span_id=00f067aa0ba902b7", "x" * 300, "héllo", "🎉 emoji", "tab\there \u2028",
             "\x7f del", "level=info \\\"quoted\\\""]
    raw = orjson.dumps({"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"service_name": "svc"}, "values": [[str(1_700_000_000_000_000_000 + i), text] for i, text in enumerate(texts)]}]}})
    native = loki._native_lines(raw, SETTINGS)
    assert native is not None and native == loki._python_lines(raw, SETTINGS)
    assert [line.line for line in native[0]] == texts
    assert all(type(line.line) is str and line.line.isascii() == text.isascii() for line, text in zip(native[0], texts, strict=True))


# Pieces of lines in every format the finders read (as tests/test_logfields.py), plus what only the native
# scanner must get right: Unicode whitespace around `=`, non-ASCII next to names, escaped quotes, zero spans.
PIECES = [
    "level=info", "level=WARN", "INFO", "ERROR", "WARNING", "Warning:", "severity=error", "log.level=debug",
    "detected_level=fatal", "lvl=x", "sev.text=Info", "x.level=info", "_level=info", "level:\u00a0info", "level=\u2003info",
    "level\x1c=info", "span_id=00f067aa0ba902b7", "spanId=ABC", "span=0", "span_id=0000", "span_id=zz", "span_id=12345678901234567",
    "parent_span_id=1", '"span_id": "00000000000000ff"', "span_id='7'", 'span_id=\\"ab\\"', "sid=ff", "s=1", "span.ident=2",
    "spanID = 00f067aa0ba902b7", "span_id=abc_", "span_id=abcé", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "[app,4bf92f3577b34da6a3ce929d0e0e4736,00f067aa0ba902b7]",
    "otelSpanID=0f", "dd.span_id=12345678901234567", 'msg="a b"', "é", "\\", '"', "'", "=", ":", "{", "}", "\t", " ", "\n",
    "\u00a0", "\u2028", "\x00", "🎉",
    "x_span=0a", "psid=00f067aa0ba902b7", "trace.span=1f", "xpsid=2", "severity=WARN", "tsid=3",
]
_PIECES = st.sampled_from(PIECES)
BODIES = [
    '{"level":"warn","span_id":"1234"}', ' {"otel":{"span_id":"00f067aa0ba902b7"}} ', '{"dd":{"span_id":"12345678901234567"}}',
    '{"level":30,"msg":"span_id=abc"}', '{"severity":"","spanId":""}', '{"span":{"id":"ff"}}', '{"ctx":{"sid":"ab"}}',
    "{not json}", "[1]", "\u00a0level=info span_id=1", "\tINFO", "é level=debug", "",
]
_BODIES = st.sampled_from(BODIES)
_LINES = st.one_of(st.lists(_PIECES, max_size=8).map("".join), st.lists(_PIECES, max_size=6).map(" ".join), _BODIES,
                   st.text(max_size=30))
_VALUES = st.sampled_from(["", "info", "ERROR", "00f067aa0ba902b7", "zz", "1", "0", " warn "])
_KEYS = st.sampled_from(["span_id", "spanId", "sid", "level", "lvl", "detected_level", "severity", "trace_id", "x", "__error__"])
_METADATA = st.one_of(
    st.fixed_dictionaries({}, optional={"structuredMetadata": st.dictionaries(_KEYS, _VALUES, max_size=3),
                                        "parsed": st.dictionaries(_KEYS, _VALUES, max_size=2)}),
    st.sampled_from([None, [], "x", 3, {"structuredMetadata": None}, {"structuredMetadata": {"span_id": 5}}]),
)
_TIMESTAMPS = st.one_of(st.integers(0, 2**63).map(str), st.sampled_from(["0001795572505053254099", "12", "0", "-5", " 7", "1e3"]),
                        st.integers(0, 2**62))
_ENTRIES = st.one_of(st.tuples(_TIMESTAMPS, _LINES).map(list), st.tuples(_TIMESTAMPS, _LINES, _METADATA).map(list),
                     st.sampled_from([["1", "a", {}, "extra"], ["1"], [1, "a"], ["1", None]]))
_LABELS = st.dictionaries(st.sampled_from(["service_name", "app", "level", "lvl", "detected_level", "pod", "__error__"]),
                          st.sampled_from(["billing", "api", "ERROR", "", "é🎉", 'a"b']), max_size=4)
_STREAMS = st.lists(st.fixed_dictionaries({"stream": _LABELS, "values": st.one_of(st.lists(_ENTRIES, max_size=6), st.none())}),
                    max_size=3)


def _answer(streams: list[dict[str, Any]], categorized: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"resultType": "streams", "result": streams}
    if categorized:
        data["encodingFlags"] = ["categorize-labels"]
    return {"status": "success", "data": data}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_STREAMS, st.booleans(), st.booleans(), st.sampled_from([SETTINGS, OTHER, MANY]))
def test_generated_answers_parse_the_same(streams: list[dict[str, Any]], categorized: bool, ascii_only: bool,
                                          settings_: LokiSettings) -> None:
    answer = _answer(streams, categorized)
    raw = json.dumps(answer, ensure_ascii=True).encode() if ascii_only else json.dumps(answer, ensure_ascii=False).encode()
    assert_same(raw, settings_)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, min_size=1, max_size=20), st.sampled_from([SETTINGS, OTHER, MANY]))
def test_generated_text_lines_are_read_natively_and_the_same(lines: list[str], settings_: LokiSettings) -> None:
    """Plain entries are never handed back whole: each line's span ID and level come out as Python finds them."""
    answer = _answer([{"stream": {"service_name": "api"}, "values": [[str(10**18 + i), line] for i, line in enumerate(lines)]}], True)
    raw = orjson.dumps(answer)
    native = loki._native_lines(raw, settings_)
    assert native is not None and native == loki._python_lines(raw, settings_)


@pytest.mark.parametrize("settings_", [SETTINGS, OTHER, MANY], ids=["default", "other-fields", "many-firsts"])
def test_every_pair_of_pieces_is_read_natively_and_the_same(settings_: LokiSettings) -> None:
    """Deterministic and exhaustive where hypothesis samples: every piece and body alone, every ordered pair of
    pieces joined with nothing and with a space, each under three kinds of metadata."""
    lines = PIECES + BODIES + [a + sep + b for a in PIECES for b in PIECES for sep in ("", " ")]
    metadata = [None, {"structuredMetadata": {"detected_level": "warn"}}, {"structuredMetadata": {"span_id": "ab", "lvl": "x"}}]
    values = [[str(10**18 + i), line, *([metadata[i % 3]] if metadata[i % 3] else [])] for i, line in enumerate(lines)]
    for categorized in (True, False):
        raw = orjson.dumps(_answer([{"stream": {"service_name": "api", "app": "web", "level": "debug"}, "values": values}],
                                   categorized))
        native = loki._native_lines(raw, settings_)
        assert native is not None
        assert native == loki._python_lines(raw, settings_)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"status":"error"}', b'{"status":"success","data":{"result":5}}',
                                 b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
                                 b'{"status":"success","data":{"result":[{"stream":{},"values":5}]}}',
                                 b'{"status":"success","data":{"result":[{"stream":{},"values":[["1","\\ud800"]]}]}}',
                                 b'{"status":"success","data":{"result":[{"stream":{},"values":[["1","a",{"x":1e999}]]}]}}',
                                 b'{"status":"success","data":{"result":[{"stream":{},"values":[["x","a"]]}]}}'])
def test_odd_answers_fail_or_parse_the_same(raw: bytes) -> None:
    assert_same(raw)


@given(st.text(max_size=40))
def test_lines_without_a_hint_hold_no_well_known_span(line: str) -> None:
    """The native path asks `idformats.from_text` only when a line holds one of `loki._SPAN_HINTS`."""
    if not any(hint in line for hint in loki._SPAN_HINTS):
        assert idformats.from_text(line, False).span_id is None


# ------------------------------------------------------------------------------ render


_PLACES = st.builds(Placement, st.one_of(st.none(), st.sampled_from(["00f067aa0ba902b7", "0000000000000001"])), st.sampled_from(list(Match)),
                    st.one_of(st.none(), st.sampled_from(list(Confidence))))
_MAPPINGS = st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                      st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3).map(MappingProxyType))
_LOG_LINES = st.builds(LogLine, st.text(max_size=20), st.one_of(st.integers(-(10**18), 2**62), st.integers(1795572505 * 10**9, 1795572509 * 10**9)),
                       st.text(max_size=30), st.one_of(st.none(), st.text(max_size=5)), st.one_of(st.none(), st.sampled_from(["info", "error"])),
                       _MAPPINGS, _MAPPINGS, st.one_of(st.none(), st.just("00f067aa0ba902b7")))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_LOG_LINES, _PLACES), max_size=12))
def test_rendered_logs_are_the_same_bytes(pairs: list[tuple[LogLine, Placement]]) -> None:
    lines, places = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    native = _native.MODULE.render_logs(lines, places, render._second_text, render._MATCH_VALUE, render._CONFIDENCE_VALUE)
    assert native is not None
    assert orjson.dumps(native) == orjson.dumps(render._logs_python(lines, places))


def test_mismatched_lengths_fail_as_python_does() -> None:
    line = LogLine("log-1", 1, "x")
    with pytest.raises(ValueError, match="shorter"):
        render._logs((line, line), (Placement(None, Match.TRACE),))


@pytest.mark.parametrize(("spans", "lines"), [(20, 100), (300, 1500)])
def test_whole_response_body_is_byte_identical(spans: int, lines: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bench-shaped answers, parsed, joined, analysed and rendered with and without the extension: the same bytes."""
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
    trace_body, loki_body, exemplar_body = otlp_trace(spans), loki_streams(lines), exemplars(spans // 5)

    def body() -> bytes:
        trace = parse_otlp_answer(trace_body, tid.hex)
        assert trace is not None
        logs, _ = loki.parse_streams_body(loki_body, settings_.loki)
        found, _ = parse_exemplars(orjson.loads(exemplar_body), settings_.prometheus.trace_id_labels, settings_.prometheus.span_id_labels)
        outcome = Correlator(settings_, None, None, None)._assemble(  # type: ignore[arg-type]
            tid, Window(trace.start_ns, trace.end_ns), (ok, SourceResult(trace)), (ok, SourceResult(tuple(logs))),
            (ok, SourceResult(tuple(found))))
        return orjson.dumps(render.correlation_body(outcome, settings_), option=orjson.OPT_NON_STR_KEYS)

    native = body()
    monkeypatch.setattr(_native, "MODULE", None)
    assert native == body()


def test_required_native_refuses_the_fallback() -> None:
    """CORRELATOR_REQUIRE_NATIVE=1 (scripts/test): without a usable extension the package does not even import."""
    import subprocess
    import sys

    env = {**os.environ, "CORRELATOR_REQUIRE_NATIVE": "1", "CORRELATOR_NATIVE": "0"}
    done = subprocess.run([sys.executable, "-c", "import correlator.sources.loki"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0 and "CORRELATOR_REQUIRE_NATIVE=1 but the native path is unusable" in done.stderr
    env["CORRELATOR_NATIVE"] = "1"
    assert subprocess.run([sys.executable, "-c", "import correlator.sources.loki"], env=env, timeout=60, check=False).returncode == 0


def test_span_ids_and_levels_past_the_recent_table_and_the_sharing_limit() -> None:
    """More distinct span IDs and levels than the recent-value table holds (64 per kind) and than an answer shares
    (4096), each repeated near and far, in lines of alternating levels: the same lines as Python's, and a value the
    parse shares is one object wherever it stands."""
    values = []
    for i in range(5000):
        for sid in (i, i // 2, 7, 4999 - i):
            level = ("info", "ERROR", "warn", f"lvl{i % 70}")[sid % 4]
            values.append([str(1_700_000_000_000_000_000 + len(values)), f"level={level} span_id={sid + 1:x} n={i}"])
    raw = orjson.dumps({"status": "success", "data": {"resultType": "streams",
                                                      "result": [{"stream": {"service_name": "svc"}, "values": values}]}})
    native = assert_same(raw)
    assert native is not None  # read natively, not handed back
    lines = native[0]
    assert len(lines) == len(values)
    by_value: dict[str, int] = {}
    for line in lines[:4000]:  # within the sharing limit: one object per value
        assert by_value.setdefault(line.span_id, id(line.span_id)) == id(line.span_id)
