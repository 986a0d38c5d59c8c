"""Trace context from a log line: every format the recorded Loki holds, and the derived-field regex."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.config import LokiSettings
from correlator.logfields import TraceContext, derived_field_regex, extract_trace_context, line_carries, span_and_level_finder
from tests.conftest import FIXTURES, skip_or_fail

RECORDED = FIXTURES / "recorded" / "loki"
SCENARIO = json.loads((RECORDED / "scenario.json").read_text())
TRACE = SCENARIO["trace_id"]
SPANS = SCENARIO["span_ids"]
SETTINGS = LokiSettings()


def recorded_lines() -> dict[str, dict[str, str]]:
    """Every recorded line → its structured metadata (from the categorized answers)."""
    out: dict[str, dict[str, str]] = {}
    for name in ("query_range.line_filter_categorized.json", "query_range.structured_metadata_categorized.json"):
        for stream in json.loads((RECORDED / name).read_text())["response"]["body"]["data"]["result"]:
            for _ts, line, extra in stream["values"]:
                out[line] = dict(extra.get("structuredMetadata", {}))
    for stream in json.loads((RECORDED / "query_range.short_64bit_id.json").read_text())["response"]["body"]["data"]["result"]:
        for _ts, line in stream["values"]:
            out[line] = {"detected_level": stream["stream"]["detected_level"]}
    return out


LINES = recorded_lines()


def line_with(fragment: str) -> tuple[str, dict[str, str]]:
    (line,) = [candidate for candidate in LINES if fragment in candidate]
    return line, LINES[line]


# (fragment naming a recorded line, trace ID, span ID, level)
FORMATS = [
    ('msg="GET /api/courses"', TRACE, SPANS["gateway"], "info"),  # logfmt, pushed
    ('"listing courses"', TRACE, SPANS["courses"], "info"),  # JSON, snake_case top level
    ('"SELECT * FROM courses"', TRACE, SPANS["db"], "debug"),  # JSON, camelCase traceId/spanId
    ('"slow query"', TRACE, SPANS["db"], "warn"),  # JSON, nested {"otel": {...}} via JSONPath
    ("invoice lookup", SCENARIO["short_trace_id"], None, "info"),  # plain text, legacy short 64-bit ID
    ("permission cache miss", TRACE, SPANS["auth"], "warn"),  # OTLP: IDs only in structured metadata
    ("token validated", TRACE, SPANS["auth"], "info"),
]


@pytest.mark.parametrize(("fragment", "trace_id", "span_id", "level"), FORMATS, ids=[f[0] for f in FORMATS])
def test_each_recorded_format(fragment: str, trace_id: str, span_id: str | None, level: str) -> None:
    """Trace ID (normalised to 32 hex), span ID and level come out of every recorded line format."""
    line, metadata = line_with(fragment)
    assert extract_trace_context(line, SETTINGS, metadata) == TraceContext(trace_id, span_id, level)


def test_the_recordings_hold_every_format() -> None:
    """The table above covers all nine recorded lines of the scenario."""
    assert len(LINES) == 9


def test_otlp_line_without_its_metadata_carries_nothing() -> None:
    """The OTLP body is plain text: the IDs exist only in metadata, so a bare line yields none."""
    line, _ = line_with("permission cache miss")
    assert extract_trace_context(line, SETTINGS) == TraceContext(None, None, None)


@pytest.mark.parametrize(("line", "expected"), [
    ("traceID: 4BF92F3577B34DA6A3CE929D0E0E4736 spanID: 00F067AA0BA902B7", (TRACE, SPANS["gateway"])),
    ('msg="{\\"trace_id\\":\\"4bf92f3577b34da6a3ce929d0e0e4736\\"}"', (TRACE, None)),  # JSON inside logfmt
    ('{"trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}, "span": {"id": "eee19b7ec3c1b174"}}', (TRACE, SPANS["auth"])),
    ('{"ctx": {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736"}}', (TRACE, None)),  # nested, no path: text scan
    ("trace=00000000000000007b4c2d9e1f3a5b6c", (SCENARIO["short_trace_id"], None)),
])
def test_other_spellings(line: str, expected: tuple[str | None, str | None]) -> None:
    """Colon style, upper case, escaped JSON, configured JSONPaths: IDs come back normalised."""
    context = extract_trace_context(line, SETTINGS)
    assert (context.trace_id, context.span_id) == expected


@pytest.mark.parametrize("line", [
    "parent_trace_id=4bf92f3577b34da6a3ce929d0e0e4736",  # another field that ends in trace_id
    "stacktrace=4bf92f3577b34da6a3ce929d0e0e4736",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736abcd0123",  # 40 hex: not a trace ID, not its prefix
    "trace_id=deadline-exceeded",
    "trace=42",  # shorter than any written trace ID
])
def test_lookalikes_are_not_trace_ids(line: str) -> None:
    """Fields that merely resemble a trace ID yield none."""
    assert extract_trace_context(line, SETTINGS).trace_id is None


def test_metadata_wins_over_the_body() -> None:
    """Structured metadata is what the SDK attached to the record: it beats text in the body."""
    context = extract_trace_context(f"retry of trace_id={SCENARIO['other_trace_id']}", SETTINGS,
                                    {"trace_id": TRACE, "span_id": SPANS["auth"]})
    assert (context.trace_id, context.span_id) == (TRACE, SPANS["auth"])


def test_configured_field_names_and_paths() -> None:
    """Field names and JSONPaths come from the settings."""
    settings = replace(SETTINGS, trace_id_fields=("tid",), span_id_fields=("sid",),
                       trace_id_jsonpaths=("$.ctx.t",), span_id_jsonpaths=("$.ctx.s",))
    assert extract_trace_context(f"tid={TRACE} sid={SPANS['db']}", settings).span_id == SPANS["db"]
    nested = json.dumps({"ctx": {"t": TRACE, "s": SPANS["db"]}})
    assert extract_trace_context(nested, settings) == TraceContext(TRACE, SPANS["db"], None)
    assert extract_trace_context(f"trace_id={TRACE}", settings).trace_id is None


def test_numeric_json_levels() -> None:
    """pino/bunyan numeric levels are named."""
    assert extract_trace_context('{"level": 50, "msg": "boom"}', SETTINGS).level == "error"


def test_line_carries_only_whole_hex_tokens() -> None:
    """A spelling inside a longer hex run is not the ID (the line filter's false positives)."""
    assert line_carries("trace=7b4c2d9e1f3a5b6c", ("00000000000000007b4c2d9e1f3a5b6c", "7b4c2d9e1f3a5b6c"))
    assert line_carries("ID 00000000000000007B4C2D9E1F3A5B6C.", ("00000000000000007b4c2d9e1f3a5b6c", "7b4c2d9e1f3a5b6c"))
    assert not line_carries("hash=aa7b4c2d9e1f3a5b6c", ("00000000000000007b4c2d9e1f3a5b6c", "7b4c2d9e1f3a5b6c"))
    assert not line_carries("hash=7b4c2d9e1f3a5b6c00", ("7b4c2d9e1f3a5b6c",))


# ------------------------------------------------------------------ the Grafana derived field

REGEX_CASES = [(line, extract_trace_context(line, SETTINGS).trace_id) for line in LINES
               if extract_trace_context(line, SETTINGS).trace_id]
NEGATIVES = ["parent_trace_id=4bf92f3577b34da6a3ce929d0e0e4736", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736abcd0123"]


def expected_capture(line: str, trace_id: str | None) -> str | None:
    """The regex captures the ID as written: 32 hex, or 16 for a short legacy ID."""
    if trace_id is None:
        return None
    return trace_id if trace_id in line.lower() else trace_id[16:]


def test_derived_field_regex_in_python() -> None:
    """One capture group; it finds the ID in every recorded body that carries one (logfmt, JSON, nested, text)."""
    pattern = re.compile(derived_field_regex(SETTINGS))
    assert pattern.groups == 1
    assert len(REGEX_CASES) == 7  # all but the two OTLP lines, whose ID is in metadata (matcherType: label)
    for line, trace_id in REGEX_CASES:
        match = pattern.search(line)
        assert match and match.group(1) == expected_capture(line, trace_id), line
    assert not any(pattern.search(line) for line in NEGATIVES)


def test_derived_field_regex_in_javascript() -> None:
    """Grafana runs it in the browser: `new RegExp(regex)` and `line.match(…)[1]`, in Node here."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed")
    lines = [line for line, _ in REGEX_CASES] + NEGATIVES
    script = ("const [re, lines] = JSON.parse(process.argv[1]); const r = new RegExp(re); const u = new RegExp(re, 'u');"
              "console.log(JSON.stringify(lines.map(l => { const m = l.match(r), n = l.match(u);"
              " return [m ? m[1] : null, n ? n[1] : null]; })))")
    out = subprocess.run([node, "-e", script, json.dumps([derived_field_regex(SETTINGS), lines])],
                         capture_output=True, text=True, check=True)
    expected = [expected_capture(line, trace_id) for line, trace_id in REGEX_CASES] + [None] * len(NEGATIVES)
    assert json.loads(out.stdout) == [[e, e] for e in expected]


_NAMES = st.sampled_from(["trace", "trace_id", "traceID", "id", "span", "span_id", "level", "lvl", "x.y", "é"])
_VALUES = st.sampled_from(["4bf92f3577b34da6", "4bf92f3577b34da6a3ce929d0e0e4736", "0f", "INFO", "zz"])
_PAIRS = st.tuples(st.sampled_from(["", "x", "_", "é", " "]), _NAMES, st.sampled_from(["=", ": ", '":"', '\\"=', "'="]),
                   _VALUES).map("".join)
_PIECES = st.one_of(_PAIRS, st.sampled_from(["trace", "_id", "ID", "span", "id", "=", " ", "x", '"', "é", "0f"]))


@settings(max_examples=500)
@given(st.lists(_NAMES, min_size=1, max_size=4, unique=True), st.lists(_PIECES, max_size=8).map("".join))
def test_the_pair_search_skips_only_where_no_match_can_start(fields: list[str], line: str) -> None:
    """The search starts where a field name first stands; it finds what a scan from the start finds."""
    from correlator.logfields import _TRACE_TEXT, _needles, _pair_pattern, _Pairs, _search, _trace

    pattern = re.compile(_pair_pattern(fields, _TRACE_TEXT))
    expected = next((found for m in pattern.finditer(line) if (found := _trace(m.group(1)))), None)
    assert _search(_Pairs(pattern, _needles(fields)), line, _trace) == expected
    any_value = re.compile(_pair_pattern(fields, "[^ ]+"))
    expected = next((m.group(1) for m in any_value.finditer(line)), None)
    assert _search(_Pairs(any_value, _needles(fields)), line, str) == expected


# Pieces of lines in every format the finders read, in any order and number (JSON bodies whole).
_PIECES = st.sampled_from([
    "level=info", "level=WARN", "INFO", "ERROR", "Warning:", "severity=error", "log.level=debug", "detected_level=fatal",
    "span_id=00f067aa0ba902b7", "spanId=ABC", "span=0", "span_id=zz", "parent_span_id=1", '"span_id": "00000000000000ff"',
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736", "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "dd.span_id=12345678901234567", 'msg="a b"', "é", "\\", '"', "=", ":", "{", "}", "\t", " ",
])
_BODIES = st.sampled_from([
    '{"level":"warn","span_id":"1234"}', ' {"otel":{"span_id":"00f067aa0ba902b7"}} ', '{"dd":{"span_id":"12345678901234567"}}',
    '{"level":30,"msg":"span_id=abc"}', '{"severity":"","spanId":""}', '{"span":{"id":"ff"}}', "{not json}", "[1]",
])
_METADATA = st.dictionaries(st.sampled_from(["span_id", "spanId", "level", "detected_level", "severity", "trace_id", "x"]),
                            st.sampled_from(["", "info", "ERROR", "00f067aa0ba902b7", "zz", "1"]), max_size=3)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(_PIECES, max_size=8).map("".join), st.lists(_PIECES, max_size=6).map(" ".join), _BODIES, st.text(max_size=40)),
       _METADATA)
def test_the_loki_parse_finder_equals_extract_trace_context(line: str, metadata: dict[str, str]) -> None:
    """The Loki parse's per-line finder (settings looked up once) reads what `extract_trace_context` reads."""
    context = extract_trace_context(line, SETTINGS, metadata, with_trace_id=False)
    assert span_and_level_finder(SETTINGS)(line, metadata) == (context.span_id, context.level)
