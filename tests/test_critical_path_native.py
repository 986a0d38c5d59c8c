"""The native critical path (native/src/critical.rs) walks exactly as the Python one: the same path, sections and time
held, in the same order, on any tree `build_tree` makes — or hands the tree back to Python."""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.analysis.critical_path import CriticalPath, Section, _critical_path_python, critical_path
from correlator.model import Trace
from correlator.sources import _native
from correlator.spantree import _build_tree_python, build_tree, columns
from tests.strategies import sequential_trees, span_trees

needs_native = pytest.mark.skipif(not hasattr(_native.MODULE, "critical_path"),
                                  reason="the extension (pip install ./native) lacks the critical path")


def _same(native: CriticalPath, python: CriticalPath) -> None:
    assert native.span_ids == python.span_ids
    assert native.sections == python.sections and all(type(s) is Section for s in native.sections)
    assert list(native.held_ns.items()) == list(python.held_ns.items())  # the order the walk entered them, too


@st.composite
def renamed(draw: st.DrawFn, trees: st.SearchStrategy[Trace]) -> Trace:
    """A tree whose span IDs are any distinct texts (ties between spans are broken by ID: any order of text)."""
    trace = draw(trees)
    ids = sorted({span.span_id for span in trace.spans})
    names = draw(st.lists(st.text(min_size=1, max_size=4), min_size=len(ids), max_size=len(ids), unique=True))
    new = dict(zip(ids, names, strict=True))
    spans = tuple(dataclasses.replace(span, span_id=new[span.span_id],
                                      parent_span_id=new.get(span.parent_span_id or "", span.parent_span_id))
                  for span in trace.spans)
    return Trace(trace.trace_id, spans)


@needs_native
@settings(max_examples=400)
@given(st.one_of(span_trees(), span_trees(malformed=True), sequential_trees(), renamed(span_trees()),
                 renamed(span_trees(malformed=True))))
def test_the_native_walk_finds_the_path_python_finds(trace: Trace) -> None:
    for tree in (build_tree(trace), _build_tree_python(trace)):
        _same(critical_path(tree), _critical_path_python(tree))


@needs_native
@given(span_trees())
def test_a_tree_built_by_hand_is_walked_the_same_from_its_dicts(trace: Trace) -> None:
    tree = _build_tree_python(trace)
    tree.cols = None  # `columns()` makes them from the dicts, as for a tree built another way
    _same(critical_path(tree), _critical_path_python(tree))


@needs_native
def test_the_native_walk_is_taken_and_hands_back_what_it_cannot_read() -> None:
    from bench.analysis_cost import inputs

    tree, _settings, _logs = inputs(20, 20, 2)  # P3's trace, as the bench's backends send it
    cols = columns(tree)
    module = _native.MODULE
    assert module is not None
    walk = module.critical_path
    assert walk(tree.roots, cols.ids, cols.spans, cols.starts, cols.durations, cols.kids, cols.order, cols.depths,
                Section) is not None
    _same(critical_path(tree), _critical_path_python(tree))
    bad_starts = [*cols.starts[:-1], float(cols.starts[-1])]
    for args in ((["nothing"], cols.ids, cols.spans, cols.starts), (tree.roots, cols.ids, cols.spans, bad_starts),
                 (tree.roots, cols.ids, cols.spans[:-1], cols.starts)):
        assert walk(*args, cols.durations, cols.kids, cols.order, cols.depths, Section) is None


def test_ci_runs_these_through_the_native_walk() -> None:
    """CI (CORRELATOR_REQUIRE_NATIVE=1) builds the extension from this tree: the comparisons above must not skip there."""
    if os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1":
        pytest.skip("only where the extension is required")
    assert hasattr(_native.MODULE, "critical_path")
