"""The span tree and the detectors, rewritten for big traces (issue 14, P2: positions and columns, one
shared pass, pruning), answer exactly as the code before did (kept in tests/reference/) on random trees —
malformed ones too: duplicate IDs with different content, orphans, self-parents, parent-link cycles,
negative durations, equal start times — and under settings that reach every branch."""

from __future__ import annotations

from dataclasses import astuple, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.analysis import analyse
from correlator.config import AnalysisSettings
from correlator.model import LogLine, Span, SpanEvent, Trace
from correlator.spantree import build_tree
from tests.reference.analyse_v1 import analyse as analyse_v1
from tests.reference.spantree_v1 import build_tree as build_tree_v1

US = 1000
_SERVICES = ("api", "db", "auth")
_NAMES = ("GET", "SELECT", "call", "GET /users/1", "GET /users/2")


def _sid(i: int) -> str:
    return f"{i:016x}"


@st.composite
def traces(draw: st.DrawFn, max_spans: int = 60) -> Trace:
    """Trees of every shape, times on a coarse grid so that starts, ends and gaps often coincide."""
    n = draw(st.integers(1, max_spans))
    malformed = draw(st.booleans())
    spans: list[Span] = []
    for i in range(n):
        if i == 0:
            parent = None
        elif malformed and draw(st.integers(0, 3)) == 0:
            parent = _sid(draw(st.integers(1, n + 3)))  # forward (cycles), self, or missing
        elif draw(st.integers(0, 9)) == 0:
            parent = None  # another root
        else:
            parent = _sid(draw(st.integers(max(1, i - 5), i)))  # mostly recent spans: siblings pile up
        start = draw(st.integers(0, 40)) * 500 * US
        duration = draw(st.sampled_from([0, 1, 2, 5, 20, 40, 300])) * 500 * US
        if malformed and draw(st.integers(0, 9)) == 0:
            duration = -duration - 1
        attrs: dict[str, object] = draw(st.sampled_from([
            {}, {"db.statement": "SELECT * FROM t WHERE id = 1"}, {"db.statement": "SELECT * FROM u WHERE id = 2"},
            {"http.response.status_code": 503}, {"peer.service": "db"}, {"error": "true"}, {"retry": 1}]))
        events = (SpanEvent("log", start + 1, {"message": draw(st.sampled_from(["waiting for lock", "retrying"]))}),) \
            if draw(st.integers(0, 7)) == 0 else ()
        spans.append(Span(_sid(i + 1), parent, draw(st.sampled_from(_SERVICES)), draw(st.sampled_from(_NAMES)),
                          start, start + duration, kind=draw(st.sampled_from(["server", "client", "internal"])),
                          status=draw(st.sampled_from(["ok", "unset", "unset", "error"])), attributes=attrs, events=events))
    if malformed and n > 1 and draw(st.booleans()):  # a duplicate ID with other content: the first is kept
        first = spans[draw(st.integers(0, n - 1))]
        spans.insert(draw(st.integers(0, len(spans))), replace(first, start_ns=first.start_ns + US, operation="dup"))
    return Trace("1" * 32, tuple(spans))


_SETTINGS = st.builds(
    AnalysisSettings,
    bottleneck_share=st.sampled_from([0.0, 0.3]),
    long_span_factor=st.sampled_from([1.5, 3.0]),
    long_span_absolute_ms=st.sampled_from([0.0, 5.0, 1000.0]),
    n_plus_one_min_count=st.sampled_from([2, 5]),
    n_plus_one_sequential_share=st.sampled_from([0.0, 0.7]),
    gap_min_ms=st.sampled_from([0.0, 1.0, 10.0]),
    gap_min_share=st.sampled_from([0.0, 0.1, 0.5]),
    fan_out_min_children=st.sampled_from([1, 2, 3, 4]),
)


@settings(max_examples=400, deadline=None)
@given(traces())
def test_the_tree_is_the_one_built_before(trace: Trace) -> None:
    new, old = build_tree(trace), build_tree_v1(trace)
    assert list(new.by_id.items()) == list(old.by_id.items())
    assert list(new.children.items()) == list(old.children.items())
    assert new.roots == old.roots
    assert list(new.depth.items()) == list(old.depth.items())  # insertion order too: some readers iterate
    assert list(new.self_ns.items()) == list(old.self_ns.items())
    assert new.order == old.order
    assert new.problems == old.problems
    assert new.bounds == old.bounds


@st.composite
def placed_lines(draw: st.DrawFn, trace: Trace) -> dict[str, list[LogLine]]:
    """Log lines the join put on some spans: many on one span, times out of order and tied."""
    out: dict[str, list[LogLine]] = {}
    for span in trace.spans:
        if draw(st.integers(0, 3)):
            continue
        count = draw(st.sampled_from([1, 3, 9, 40]))
        stamps = draw(st.lists(st.integers(0, 12), min_size=count, max_size=count))
        out[span.span_id] = [
            LogLine(f"log-{span.span_id}-{i}", span.start_ns + t * 250 * US,
                    draw(st.sampled_from(["ok", "waiting for lock", "Retrying call after error", "boom"])),
                    span.service, draw(st.sampled_from([None, "info", "error"])), span_id=span.span_id)
            for i, t in enumerate(stamps)]
    return out


@settings(max_examples=400, deadline=None)
@given(st.data(), traces(), _SETTINGS)
def test_the_analysis_finds_what_it_found_before(data: st.DataObject, trace: Trace,
                                                 analysis_settings: AnalysisSettings) -> None:
    logs = data.draw(placed_lines(trace)) if data.draw(st.booleans()) else {}
    tree = build_tree(trace)
    old_tree: Any = build_tree_v1(trace)  # the old tree's own class, read through the same attributes
    new, old = analyse(tree, analysis_settings, logs), analyse_v1(old_tree, analysis_settings, logs)
    assert new.critical_path == old.critical_path
    assert [(s.span_id, s.start_ns, s.end_ns) for s in new.sections] == [astuple(s) for s in old.sections]
    assert new.critical_ns == old.critical_ns
    assert new.findings == old.findings
