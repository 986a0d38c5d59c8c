"""A finding's quotes made natively (native/src/quotes.rs) are the ones Python makes (`events._quotes_python`).

Equal lists of equal dicts, keys in the same order and floats of the same repr (the body is written by orjson), on
generated spans, events and lines — ties in time, unsorted and long line lists, long texts, offsets `round` must
decide (negative, ties, beyond 2⁵⁰ ns), bare-attribute events — and on the findings of recorded traces.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.analysis import analyse
from correlator.analysis.common import new_finding
from correlator.analysis.events import _quotes_python, quotes
from correlator.config import AnalysisSettings
from correlator.model import Finding, LogLine, Severity, Span, SpanEvent, Trace
from correlator.sources import _native
from correlator.spantree import build_tree
from tests.test_tree_analysis_same import _SETTINGS, placed_lines, traces

native_quotes = getattr(_native.MODULE, "quotes", None)
needs_native = pytest.mark.skipif(native_quotes is None, reason="the extension here has no `quotes` (pip install ./native)")

_TEXTS = st.one_of(st.sampled_from(["", "ok", "waiting for lock", "é" * 199, "ü" * 200, "x" * 201, "🙂" * 250]), st.text(max_size=300))
_TIMES = st.one_of(st.integers(0, 10**9), st.integers(0, 10**6).map(lambda k: k * 1000 + 500),
                   st.integers(-(10**9), 10**9), st.integers(1 << 49, 1 << 51))
_TIDY = st.integers(0, 10**9).filter(lambda t: t % 1000 != 500)  # offsets the native path writes itself


@st.composite
def spans_and_lines(draw: st.DrawFn) -> tuple[list[Span], dict[str, Any], int]:
    base = draw(st.sampled_from([0, 1_795_572_505_053_254_099]))
    tidy = draw(st.booleans())
    times_of = _TIDY if tidy else _TIMES
    spans: list[Span] = []
    logs: dict[str, Any] = {}
    for i in range(draw(st.integers(0, 25))):
        sid = f"{i:016x}"
        events = tuple(SpanEvent(draw(st.sampled_from(["", "exception", "retry"])), base + draw(times_of),
                                 draw(st.sampled_from([{}, {"message": "redis timeout"}, {"k": 1, "v": None}])))
                       for _ in range(draw(st.integers(0, 3))))
        spans.append(Span(sid, None, "svc", "op", base, base + 10**6, events=events))
        count = draw(st.sampled_from([0, 0, 1, 2, 9, 12, 40]))
        if count or draw(st.booleans()):
            times = draw(st.lists(times_of, min_size=count, max_size=count))
            if draw(st.booleans()):
                times.sort()
            lines = [LogLine(f"l{i}-{j}", base + t, draw(_TEXTS), "svc", draw(st.sampled_from([None, "info", "error"])))
                     for j, t in enumerate(times)]
            logs[sid] = tuple(lines) if draw(st.booleans()) else lines
    spans = draw(st.permutations(spans))
    origin = base - (0 if tidy else draw(st.sampled_from([0, 1, -(10**6), 10**9])))
    return spans, logs, origin


def _same(spans: list[Span], logs: dict[str, Any], origin: int) -> list[dict[str, Any]]:
    python = _quotes_python(spans, logs, origin)
    assert native_quotes is not None
    native = native_quotes(spans, logs, origin, importlib.import_module("correlator.analysis.events").event_text, SpanEvent,
                           8, 200)
    if native is not None:  # None: handed back (an offset `round` decides), Python's answer is the answer
        assert native == python
        assert [list(q) for q in native] == [list(q) for q in python]  # the keys' order: the JSON's
        assert orjson.dumps(native) == orjson.dumps(python)
    assert quotes(spans, logs, origin) == python  # the one the analysis calls
    return python


@needs_native
@settings(max_examples=600, deadline=None)
@given(spans_and_lines())
def test_native_quotes_are_pythons(case: tuple[list[Span], dict[str, Any], int]) -> None:
    _same(*case)


@needs_native
def test_the_usual_quotes_are_made_natively() -> None:
    """P3's shape (a line or two per span, times after the trace's start) is not handed back."""
    spans = [Span(f"{i:016x}", None, "svc", "op", 10**6, 2 * 10**6) for i in range(5)]
    logs = {sp.span_id: [LogLine(f"l{i}", 10**6 + i * 1234, f"step {i}", "svc", "info")] for i, sp in enumerate(spans)}
    assert native_quotes is not None
    made = native_quotes(spans, logs, 10**6, importlib.import_module("correlator.analysis.events").event_text, SpanEvent, 8, 200)
    assert made is not None and len(made) == 5
    assert made == _same(spans, logs, 10**6)


@needs_native
def test_anything_unexpected_is_handed_back_to_python() -> None:
    """Not a list, not a dict, a float time, a line that is not a str: None (Python then raises or answers)."""
    assert native_quotes is not None
    text = importlib.import_module("correlator.analysis.events").event_text
    span = Span("a" * 16, None, "svc", "op", 0, 10)
    line = LogLine("l", 5, "x", "svc", "info")
    assert native_quotes((span,), {span.span_id: [line]}, 0, text, SpanEvent, 8, 200) is None
    assert native_quotes([span], mock.MagicMock(), 0, text, SpanEvent, 8, 200) is None
    assert native_quotes([span], {span.span_id: [LogLine("l", 5.0, "x")]}, 0, text, SpanEvent, 8, 200) is None  # type: ignore[arg-type]
    assert native_quotes([span], {span.span_id: [LogLine("l", 5, b"x")]}, 0, text, SpanEvent, 8, 200) is None  # type: ignore[arg-type]
    assert native_quotes([object()], {}, 0, text, SpanEvent, 8, 200) is None
    with pytest.raises(AttributeError):
        quotes([object()], {}, 0)  # type: ignore[list-item]  # as Python raises it (analyse reports the merge check)


@needs_native
@settings(max_examples=150, deadline=None)
@given(st.data(), traces(), _SETTINGS)
def test_findings_quote_the_same_with_and_without_the_native_quotes(data: st.DataObject, trace: Trace,
                                                                   analysis_settings: AnalysisSettings) -> None:
    logs = data.draw(placed_lines(trace))
    native = analyse(build_tree(trace), analysis_settings, logs).findings
    with mock.patch.object(_native, "MODULE", None):
        python = analyse(build_tree(trace), analysis_settings, logs).findings
    assert native == python
    assert [orjson.dumps(dict(f.evidence), option=orjson.OPT_NON_STR_KEYS) for f in native] == \
        [orjson.dumps(dict(f.evidence), option=orjson.OPT_NON_STR_KEYS) for f in python]


@needs_native
def test_the_p3_trace_quotes_the_same() -> None:
    """P3's correlation as the bench's backends send it: 20 spans, 21 lines on them, ~25 quotes."""
    from bench.analysis_cost import inputs

    tree, analysis_settings, logs = inputs(20, 20, 2)
    native = analyse(tree, analysis_settings, logs).findings
    with mock.patch.object(_native, "MODULE", None):
        python = analyse(tree, analysis_settings, logs).findings
    assert sum(len(f.evidence.get("quotes", ())) for f in native) >= 20
    assert native == python
    assert [orjson.dumps(dict(f.evidence)) for f in native] == [orjson.dumps(dict(f.evidence)) for f in python]


native_quote_findings = getattr(_native.MODULE, "quote_findings", None)
merge_module = importlib.import_module("correlator.analysis.merge")
needs_quote_findings = pytest.mark.skipif(native_quote_findings is None,
                                          reason="the extension here has no `quote_findings` (pip install ./native)")


def _quoting(findings: list[Finding], by_id: dict[str, Span], logs: dict[str, Any], origin: int) -> Any:
    assert native_quote_findings is not None
    events = importlib.import_module("correlator.analysis.events")
    return native_quote_findings(findings, by_id, logs, origin, events.event_text, SpanEvent, 8, 200, 20, new_finding)


@st.composite
def findings_to_quote(draw: st.DrawFn) -> tuple[list[Finding], dict[str, Span], dict[str, Any], int]:
    """Findings over generated spans and lines: IDs the tree does not know, more than 20 spans, quotes of their own."""
    spans, logs, origin = draw(spans_and_lines())
    ids = [sp.span_id for sp in spans] + ["f" * 16, "unknown"]
    findings = []
    for k in range(draw(st.integers(0, 8))):
        chosen = tuple(draw(st.lists(st.sampled_from(ids), max_size=30))) if ids else ()
        evidence: dict[str, object] = draw(st.sampled_from([{}, {"a": 1, "b": [1.5]}, {"quotes": []}, {"z": None, "quotes": [{}]}]))
        findings.append(Finding(draw(st.sampled_from(["fan_out", "bottleneck"])), draw(st.sampled_from(list(Severity))),
                                f"m{k}", chosen, dict(evidence), draw(st.integers(0, 10**9))))
    return findings, {sp.span_id: sp for sp in spans}, logs, origin


@needs_quote_findings
@settings(max_examples=500, deadline=None)
@given(findings_to_quote())
def test_findings_quoted_in_one_native_call_are_pythons(case: tuple[list[Finding], dict[str, Span], dict[str, Any], int]) -> None:
    findings, by_id, logs, origin = case
    python = merge_module._quote_python(list(findings), by_id, logs, origin)
    native = _quoting(list(findings), by_id, logs, origin)
    if native is not None:  # None: some finding's quotes were handed back; Python's answer is the answer
        assert native == python
        assert [list(f.evidence) for f in native] == [list(f.evidence) for f in python]
        assert [orjson.dumps(dict(f.evidence)) for f in native] == [orjson.dumps(dict(f.evidence)) for f in python]
        assert all(a is b for a, b, old in zip(native, python, findings, strict=True) if b is old)  # unquoted: the same object


@needs_quote_findings
def test_p3s_findings_are_quoted_in_one_native_call_and_the_unexpected_handed_back() -> None:
    from bench.analysis_cost import inputs

    tree, analysis_settings, logs = inputs(20, 20, 2)
    findings = list(analyse(tree, analysis_settings, {}).findings)  # no lines: nothing quoted yet
    made = _quoting(list(findings), tree.by_id, logs, tree.start_ns)
    assert made is not None and sum(len(f.evidence.get("quotes", ())) for f in made) >= 20
    assert made == merge_module._quote_python(list(findings), tree.by_id, logs, tree.start_ns)
    first = findings[0]
    for odd in (dataclasses.replace(first, span_ids=list(first.span_ids)),  # type: ignore[arg-type]
                dataclasses.replace(first, evidence=types.MappingProxyType(dict(first.evidence))),
                dataclasses.replace(first, span_ids=([1],))):  # type: ignore[arg-type]  # unhashable: Python raises it
        assert _quoting([odd, *findings[1:]], tree.by_id, logs, tree.start_ns) is None
    assert _quoting(tuple(findings), tree.by_id, logs, tree.start_ns) is None  # type: ignore[arg-type]


def test_ci_runs_these_through_the_native_quotes() -> None:
    """CI (CORRELATOR_REQUIRE_NATIVE=1) builds the extension from this tree: the comparisons above must not skip there."""
    if os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1":
        pytest.skip("the native path is optional here")
    assert native_quotes is not None, "the installed extension predates native/src/quotes.rs: pip install ./native"
    assert native_quote_findings is not None, "the installed extension predates `quote_findings`: pip install ./native"
