"""The fan-out's "runs N of its M calls in parallel" findings built natively (native/src/fan_out.rs) are the Python
loop's (`fan_out._parallel_findings_python`, the reference): the same kind, severity, message, span IDs, evidence (keys
in the same order, the same floats: compared by repr) and impact — on any durations, the `fmt_ms` and `round` edges
included, on generated trees and on P3's trace — or handed back to Python."""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.analysis import analyse
from correlator.analysis.common import label, new_finding
from correlator.analysis.identity import known_label, native_function, target
from correlator.config import AnalysisSettings
from correlator.model import Finding, LogLine, Severity, Span, Trace
from correlator.sources import _native
from correlator.spantree import build_tree, columns
from tests.strategies import span_trees
from tests.test_analysis_cost_same import fan_outs
from tests.test_tree_analysis_same import _SETTINGS

fan_out_module = importlib.import_module("correlator.analysis.fan_out")  # the package's `fan_out` is the detector

needs_native = pytest.mark.skipif(not hasattr(_native.MODULE, "fan_out_parallel_findings"),
                                  reason="the extension (pip install ./native) lacks the fan-out findings")

MS = 1_000_000
# Where `fmt_ms` and `round` change their texts: its three precisions' edges, `round(ms, 1)` deciding near 9.95 ms,
# the `.Nf` ties (binary fractions just above and below), 2⁵³ (beyond it Python's division is not an f64 one).
_EDGES = [0, 1, 4_999, 5_000, 5_001, 994_999, 995_000, 999_999, 1_000_000, 1_049_999, 1_050_000, 1_250_000, 1_350_000,
          9_899_999, 9_900_000, 9_949_999, 9_950_000, 9_950_001, 9_999_999, 10_000_000, 10_500_000, 2_500_000,
          2 ** 53 - 1, 2 ** 53, 2 ** 53 + 1, 2 ** 60]
_NS = st.one_of(st.sampled_from(_EDGES), st.integers(0, 2 ** 54), st.integers(-(2 ** 54), 0).map(abs),
                st.integers(0, 100_000).map(lambda k: k * 50_000), st.integers(0, 200).map(lambda k: k * 5_000))


def _same(native: list[Finding], python: list[Finding]) -> None:
    assert native == python
    assert [repr(f) for f in native] == [repr(f) for f in python]  # floats' signs, evidence key order, the types
    assert [type(f.span_ids) for f in native] == [type(f.span_ids) for f in python]


def _python_only(name: str) -> Any:
    return None if name == "fan_out_parallel_findings" else native_function(name)


def _both_ways(run: Any) -> tuple[Any, Any]:
    native = run()
    setattr(fan_out_module, "native_function", _python_only)  # noqa: B010
    try:
        python = run()
    finally:
        setattr(fan_out_module, "native_function", native_function)  # noqa: B010
    return native, python


@st.composite
def shown_entries(draw: st.DrawFn) -> tuple[Trace, list[Any]]:
    """A parent per entry, each with a few children, and the entries `fan_out` would show for them: any Σ and wall."""
    spans = [Span(f"{1:016x}", None, "api", "GET /root", 0, 10, kind="server")]
    entries: list[Any] = []
    for e in range(draw(st.integers(1, 6))):
        parent = f"{len(spans) + 1:016x}"
        spans.append(Span(parent, spans[0].span_id, draw(st.sampled_from(["api", "db", "ünï"])),
                          draw(st.sampled_from(["op", "GET /x", "SELECT", "→ ×"])), 0, 10,
                          kind=draw(st.sampled_from(["client", "server", "internal"])),
                          attributes=draw(st.sampled_from([{}, {"db.statement": "SELECT * FROM t WHERE id = 7"},
                                                           {"http.route": "/users/{id}"}]))))
        below = []
        for _ in range(draw(st.integers(2, 5))):
            below.append(len(spans))
            spans.append(Span(f"{len(spans) + 1:016x}", parent, "db", f"q{len(spans)}", 0, 10, kind="client"))
        total, wall = draw(_NS), draw(_NS.filter(lambda n: n > 0))
        overlapping = draw(st.integers(1, len(below)))
        entries.append((wall - total, parent, e, below, None, overlapping, total, wall, False))
    return Trace("1" * 32, tuple(spans)), entries


@needs_native
@settings(max_examples=600, deadline=None)
@given(shown_entries())
def test_any_numbers_make_the_same_findings(case: tuple[Trace, list[Any]]) -> None:
    trace, shown = case
    tree = build_tree(trace)
    cols = columns(tree)
    args = (shown, tree, cols.ids, cols.starts, cols.durations, cols.spans)
    _same(fan_out_module._parallel_findings(*args), fan_out_module._parallel_findings_python(*args))


@needs_native
@settings(max_examples=400, deadline=None)
@given(fan_outs(), _SETTINGS)
def test_generated_fan_outs_are_read_the_same(case: tuple[Trace, dict[str, list[LogLine]]], analysis_settings: AnalysisSettings) -> None:
    trace, logs = case
    native, python = _both_ways(lambda: analyse(build_tree(trace), analysis_settings, logs).findings)
    _same(list(native), list(python))


@needs_native
@settings(max_examples=300, deadline=None)
@given(st.one_of(span_trees(), span_trees(malformed=True)))
def test_any_tree_is_read_the_same(trace: Trace) -> None:
    native, python = _both_ways(lambda: analyse(build_tree(trace), AnalysisSettings()).findings)
    _same(list(native), list(python))


@needs_native
def test_p3s_trace_takes_the_native_way_and_it_hands_back_what_it_cannot_build() -> None:
    from bench.analysis_cost import inputs

    tree, analysis_settings, logs = inputs(20, 20, 2)  # P3's trace, as the bench's backends send it
    native, python = _both_ways(lambda: analyse(tree, analysis_settings, logs).findings)
    _same(list(native), list(python))
    assert sum(f.kind == "fan_out" for f in native) == 5
    build = _native.MODULE.fan_out_parallel_findings  # type: ignore[union-attr]
    cols = columns(tree)
    parent = tree.roots[0]
    below = cols.kids[cols.ids.index(parent)]
    entry = (0, parent, 0, below, None, 2, 3 * MS, 2 * MS, False)

    def made(*entries: Any) -> Any:
        return build(list(entries), tree.by_id, cols.ids, label, new_finding, "fan_out", Severity.INFO)
    assert made(entry) is not None
    for other in ((*entry[:4], [tree.by_id[parent]], *entry[5:]),  # a same-target group: Python's
                  (*entry[:5], 0, *entry[6:]),  # the overlap not counted yet: Python's `_overlapping_at`
                  (*entry[:8], True),  # one target: its callee in the text
                  (*entry[:6], 2 ** 53, *entry[7:]),  # beyond exact doubles
                  (*entry[:7], 0, False),  # no wall
                  (*entry[:3], [*below, 10 ** 6], *entry[4:]),  # a position out of range
                  entry[:8]):
        assert made(entry, other) is None
    assert build((entry,), tree.by_id, cols.ids, label, new_finding, "fan_out", Severity.INFO) is None  # not a list


@settings(max_examples=300, deadline=None)
@given(st.one_of(span_trees(), span_trees(malformed=True), fan_outs().map(lambda case: case[0])))
def test_a_label_whose_target_is_kept_is_the_label(trace: Trace) -> None:
    """`known_label` (fan-out's and the bottleneck's) = `label`, and what it keeps in the tree's targets is `target`."""
    tree = build_tree(trace)
    for _ in range(2):  # worked out, then read back
        for sid, span in tree.by_id.items():
            assert known_label(span, tree.targets) == label(span)
            assert tree.targets[sid] == target(span)


def test_ci_runs_these_through_the_native_findings() -> None:
    """CI (CORRELATOR_REQUIRE_NATIVE=1) builds the extension from this tree: the comparisons above must not skip there."""
    if os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1":
        pytest.skip("only where the extension is required")
    assert hasattr(_native.MODULE, "fan_out_parallel_findings")
