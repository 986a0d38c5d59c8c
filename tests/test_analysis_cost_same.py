"""The analysis after the cost round (docs/performance-analysis.md) finds exactly what it found before.

`tests/reference/analysis_v2/` is the analysis package as it was at main e19f81d; every answer —
the critical path, its sections and held time, and each finding's kind, severity, message, spans,
evidence and impact, in order — must be equal on generated traces of every shape, malformed ones
included, with log lines placed on spans, under every combination of the thresholds.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.analysis import analyse
from correlator.config import AnalysisSettings
from correlator.model import LogLine, Span, SpanEvent, Trace
from correlator.spantree import build_tree
from tests.reference.analysis_v2 import analyse as analyse_v2
from tests.test_tree_analysis_same import _SETTINGS, placed_lines, traces

US = 1000
_WORDS = ("ok", "waiting for lock", "Retrying call after error", "boom", "queue full", "rate-limited", "stalled", "pool")


def _same(trace: Trace, analysis_settings: AnalysisSettings, logs: dict[str, list[LogLine]]) -> None:
    tree, old_tree = build_tree(trace), build_tree(trace)  # each its own tree: nothing shared through caches
    new, old = analyse(tree, analysis_settings, logs), analyse_v2(old_tree, analysis_settings, logs)
    assert new.critical_path == old.critical_path
    assert [tuple(s) for s in new.sections] == [tuple(s) for s in old.sections]
    assert new.critical_ns == old.critical_ns
    assert new.findings == old.findings
    assert [f.message for f in new.findings] == [f.message for f in old.findings]


@settings(max_examples=400, deadline=None)
@given(st.data(), traces(), _SETTINGS)
def test_any_tree_is_read_as_before(data: st.DataObject, trace: Trace, analysis_settings: AnalysisSettings) -> None:
    logs = data.draw(placed_lines(trace)) if data.draw(st.booleans()) else {}
    _same(trace, analysis_settings, logs)


@st.composite
def fan_outs(draw: st.DrawFn) -> tuple[Trace, dict[str, list[LogLine]]]:
    """Parents with many children: distinct calls, same-target groups, pools, one-after-another calls; events and
    lines that name waits, so the findings' text, evidence and quotes are all exercised."""
    spans: list[Span] = [Span(f"{1:016x}", None, "api", "GET /root", 0, 400_000 * US, kind="server")]
    logs: dict[str, list[LogLine]] = {}
    parents = [spans[0].span_id]
    for _ in range(draw(st.integers(1, 6))):
        parent = draw(st.sampled_from(parents))
        base = draw(st.integers(0, 50)) * 1000 * US
        step = draw(st.sampled_from([0, 100, 1000, 5000])) * US
        length = draw(st.sampled_from([0, 500, 5000, 20000])) * US
        names = draw(st.sampled_from([("a", "b", "c", "d", "e"), ("q",), ("q", "q", "r"), ("GET /u/1", "GET /u/2")]))
        for j in range(draw(st.integers(1, 12))):
            sid = f"{len(spans) + 1:016x}"
            start = base + j * step
            end = start + length + draw(st.integers(0, 3)) * 1000 * US
            attrs: dict[str, object] = draw(st.sampled_from([
                {}, {"peer.service": "db"}, {"db.statement": f"SELECT * FROM t WHERE id = {j}"}, {"server.address": "x"},
                {"http.status_code": 500}]))
            events = (SpanEvent("log", start, {"message": draw(st.sampled_from(_WORDS))}),) if draw(st.booleans()) else ()
            spans.append(Span(sid, parent, draw(st.sampled_from(["api", "db", "api"])), names[j % len(names)], start, end,
                              kind=draw(st.sampled_from(["client", "internal", "server"])),
                              status=draw(st.sampled_from(["unset", "unset", "error"])), attributes=attrs, events=events))
            if draw(st.integers(0, 2)) == 0:
                logs[sid] = [LogLine(f"l{sid}{k}", start + k * US, draw(st.sampled_from(_WORDS)), "api",
                                     draw(st.sampled_from([None, "info", "error"])), span_id=sid)
                             for k in range(draw(st.integers(1, 4)))]
            if draw(st.integers(0, 3)) == 0:
                parents.append(sid)
    return Trace("1" * 32, tuple(spans)), logs


@settings(max_examples=400, deadline=None)
@given(fan_outs(), _SETTINGS)
def test_fan_outs_are_read_as_before(case: tuple[Trace, dict[str, list[LogLine]]], analysis_settings: AnalysisSettings) -> None:
    trace, logs = case
    _same(trace, analysis_settings, logs)


def test_the_p3_and_bench_traces_are_read_as_before() -> None:
    """P3's correlation (20 spans) and a 2,000-span bench trace, as the service sees them."""
    from bench.bench_analysis import _Builder  # the bench's realistic blocks: loops, fan-outs, errors, waits

    for n in (20, 2000):
        spans = [Span(f"{i + 1:016x}", None if i == 0 else f"{(i - 1) // 4 + 1:016x}", ("gw", "auth", "course")[min(i, 2)],
                      f"op-{i % 7}", i * 100 * US, i * 100 * US + 5000 * US, kind="client" if i < 3 else "server",
                      attributes={"db.statement": f"SELECT * FROM t WHERE id = {i}"}) for i in range(n)]
        logs = {sp.span_id: [LogLine(f"x{sp.span_id}", sp.start_ns + US, f'level=info msg="step {i}"', "course", "info",
                                     span_id=sp.span_id)] for i, sp in enumerate(spans)}
        _same(Trace("1" * 32, tuple(spans)), AnalysisSettings(), logs)
    builder = _Builder(7)
    root = builder.add(None, "gw", "GET /", 0, 10**12, kind="server")
    t = 0
    for k in range(40):
        t = builder.block(root, t, k)
    _same(Trace("1" * 32, tuple(builder.spans)), AnalysisSettings(), {})


@st.composite
def many_parallel_parents(draw: st.DrawFn) -> Trace:
    """More parents of parallel calls than can be shown, savings often tied: which ten are kept, and in what order."""
    spans: list[Span] = [Span("r" * 16, None, "api", "GET /", 0, 10**9, kind="server")]
    ids = draw(st.permutations([f"{i:016x}" for i in range(1, draw(st.integers(2, 30)) + 1)]))
    for pid in ids:
        base = draw(st.integers(0, 5)) * 1000 * US
        spans.append(Span(pid, "r" * 16, "api", draw(st.sampled_from(["a", "b"])), base, base + 50_000 * US))
        for j in range(draw(st.integers(1, 5))):
            start = base + draw(st.sampled_from([0, 0, 100, 3000])) * US
            spans.append(Span(f"{pid}-{j}", pid, "api", draw(st.sampled_from(["x", "y", "z", "w", "v"])), start,
                              start + draw(st.sampled_from([0, 1000, 5000])) * US, kind="client"))
    return Trace("1" * 32, tuple(spans))


@settings(max_examples=200, deadline=None)
@given(many_parallel_parents(), _SETTINGS)
def test_the_parallel_parents_shown_are_those_shown_before(trace: Trace, analysis_settings: AnalysisSettings) -> None:
    _same(trace, analysis_settings, {})


def test_the_fan_out_pass_is_the_native_one_when_installed() -> None:
    """CI installs the extension: the comparisons above then run through native/src/analysis.rs's `fan_out_scan`."""
    from correlator.analysis.identity import native_function
    from correlator.sources import _native

    if _native.MODULE is None:
        pytest.skip("no native extension here")
    assert native_function("fan_out_scan") is not None
    assert native_function("span_groups") is not None


def _fresh_strings(trace: Trace) -> Trace:
    """The same trace with each span's own service and operation objects (equal text, other objects)."""
    return Trace(trace.trace_id, tuple(replace(sp, service="".join(list(sp.service)), operation="".join(list(sp.operation)))
                                       for sp in trace.spans))


@settings(max_examples=300, deadline=None)
@given(st.one_of(traces(), traces().map(_fresh_strings), fan_outs().map(lambda case: case[0]), many_parallel_parents()), _SETTINGS)
def test_the_native_passes_find_what_the_python_ones_find(trace: Trace, analysis_settings: AnalysisSettings) -> None:
    """native/src/analysis.rs (`fan_out_scan`, `span_groups`) against the Python loops they stand in for (`failed`, the
    long spans' grouping, fan-out's pass over the parents)."""
    import importlib
    from unittest import mock

    native = analyse(build_tree(trace), analysis_settings).findings
    with mock.patch.object(importlib.import_module("correlator.analysis.fan_out"), "native_function", lambda name: None), \
            mock.patch.object(importlib.import_module("correlator.analysis.common"), "native_function", lambda name: None):
        python = analyse(build_tree(trace), analysis_settings).findings
    assert native == python


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(-10**7, 10**7), st.integers(0, 1 << 51), st.integers(0, 10**12).map(lambda k: k * 1000 + 500),
                 st.integers(0, 10**12).map(lambda k: k * 1000 + 499), st.integers(-(1 << 60), 1 << 60)))
def test_a_quotes_offset_is_rounded_as_round_rounds_it(offset: int) -> None:
    """`offset_ms` (inline in `quotes`) gives the very float `round(offset / 1e6, 3)` gives, -0.0 included."""
    from correlator.analysis.events import offset_ms

    got, want = offset_ms(offset), round(offset / 1e6, 3)
    assert got == want and str(got) == str(want)
