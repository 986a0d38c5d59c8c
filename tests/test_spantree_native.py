"""The span tree built by the extension (native/src/tree.rs) is the one `build_tree`'s Python builds: every dict
(items in order), list, problem and column, on random trees — orphans, self-parents, equal starts and ends,
Unicode IDs that order differently as bytes and as UTF-16 — on the fixtures' and the bench's traces; and where it
cannot be sure (duplicates, negative durations, cycles, IDs that are not plain `str`, times that are not 64-bit
`int`s) it hands the trace to Python, which then builds it as before."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.fake_backends import otlp_trace
from correlator.model import Span, Trace
from correlator.sources import _native
from correlator.sources.jaeger import parse_otlp_answer
from correlator.spantree import SpanTree, _build_tree_python, _native_tree, build_tree
from tests.spanmix import TRACE_ID, bodies
from tests.test_native_otlp import FIXTURE_TRACES, _ids_in
from tests.test_tree_analysis_same import traces

pytestmark = pytest.mark.skipif(not hasattr(_native.MODULE, "span_tree") and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
                                reason="the native extension (with span_tree) is not installed")

US = 1000
# Code points on both sides of the surrogates: UTF-8 byte order is code point order (Python's str order).
_ID_CHARS = st.sampled_from(["0", "1", "a", "f", "A", "é", "\u00ff", "\u0100", "\ud7ff", "\ue000", "\uffff", "😀", " "])


def same_tree(new: SpanTree, old: SpanTree) -> None:
    for name in ("by_id", "children", "depth", "self_ns"):
        assert list(getattr(new, name).items()) == list(getattr(old, name).items()), name
        assert type(getattr(new, name)) is dict
    assert new.roots == old.roots
    assert new.order == old.order
    assert new.problems == old.problems
    assert new.bounds == old.bounds
    assert new.targets == old.targets == {}
    assert new.cols is not None and old.cols is not None
    for name in ("ids", "spans", "starts", "durations", "self_ns", "kids", "parents"):
        assert getattr(new.cols, name) == getattr(old.cols, name), name
        assert all(type(a) is type(b) for a, b in zip(getattr(new.cols, name), getattr(old.cols, name), strict=True)), name
    # Every value has the types Python gives it (an int is an int, a leaf's children a list, …).
    assert [type(v) for v in new.children.values()] == [type(v) for v in old.children.values()]
    for name in ("depth", "self_ns"):
        assert [type(v) for v in getattr(new, name).values()] == [type(v) for v in getattr(old, name).values()], name


@st.composite
def well_formed(draw: st.DrawFn, max_spans: int = 50) -> Trace:
    """Nothing to repair, but orphans, self-parents, several roots, ties everywhere and Unicode IDs."""
    n = draw(st.integers(1, max_spans))
    ids = draw(st.lists(st.text(_ID_CHARS, min_size=1, max_size=3), min_size=n, max_size=n, unique=True))
    spans = []
    for i, sid in enumerate(ids):
        shape = draw(st.integers(0, 9))
        if i == 0 or shape == 0:
            parent = None
        elif shape == 1:
            parent = "missing-" + draw(st.text(_ID_CHARS, max_size=2))  # an orphan
        elif shape == 2:
            parent = sid  # its own parent
        else:
            parent = ids[draw(st.integers(0, i - 1))]  # an earlier span: no cycle
        start = draw(st.integers(0, 6)) * 500 * US + draw(st.sampled_from([0, 0, 1, -(2**62)]))
        end = start + draw(st.sampled_from([0, 0, 1, 500 * US, 2000 * US, 10_000 * US]))
        spans.append(Span(sid, parent, "svc", "op", start, end))
    order = draw(st.permutations(range(n)))  # children may come before their parents
    return Trace("1" * 32, tuple(spans[i] for i in order))


@settings(max_examples=500, deadline=None)
@given(well_formed())
def test_a_well_formed_tree_is_built_natively_and_the_same(trace: Trace) -> None:
    new = _native_tree(trace.spans)
    assert new is not None
    same_tree(new, _build_tree_python(trace))


@settings(max_examples=400, deadline=None)
@given(traces())
def test_malformed_trees_go_to_python_and_the_rest_are_the_same(trace: Trace) -> None:
    """The analysis tests' trees: duplicates, cycles and negative durations handed back, the others equal."""
    old = _build_tree_python(trace)
    new = _native_tree(trace.spans)
    repairs = [p for p in old.problems if "duplicate" in p or "negative" in p or "cycle" in p]
    assert (new is None) == bool(repairs)
    same_tree(build_tree(trace), old)
    if new is not None:
        same_tree(new, old)


def _odd(span: Span, **changes: Any) -> Span:
    odd = replace(span)
    for name, value in changes.items():
        object.__setattr__(odd, name, value)
    return odd


class _Text(str):
    pass


@pytest.mark.parametrize("change", [
    {"span_id": _Text("0000000000000002")},  # a str subclass: Python's equality and order
    {"parent_span_id": _Text("0000000000000001")},
    {"parent_span_id": 1},
    {"span_id": "\ud800"},  # a lone surrogate: no UTF-8 to order by
    {"start_ns": 1.5e15},
    {"end_ns": True},
    {"start_ns": -(2**63) - 1},
    {"end_ns": 2**64},
    {"start_ns": -(2**63), "end_ns": 2**63 - 1},  # a duration beyond 64 bits
])
def test_what_it_is_not_sure_of_goes_to_python(change: dict[str, Any]) -> None:
    root = Span("0000000000000001", None, "svc", "op", 10, 100)
    spans = (root, _odd(Span("0000000000000002", "0000000000000001", "svc", "op", 20, 30), **change),
             Span("0000000000000003", "0000000000000002", "svc", "op", 25, 26))
    assert _native_tree(spans) is None
    trace = Trace("1" * 32, spans)
    same_tree(build_tree(trace), _build_tree_python(trace))


def test_a_list_of_spans_or_none_goes_to_python() -> None:
    spans = [Span("0000000000000001", None, "svc", "op", 10, 100)]
    assert _native_tree(spans) is None  # type: ignore[arg-type]
    assert _native_tree(()) is None
    assert build_tree(Trace("1" * 32, ())).by_id == {}


@pytest.mark.parametrize("count", [1, 2, 5, 1000, 20_000])
def test_bench_traces(count: int) -> None:
    trace = parse_otlp_answer(otlp_trace(count), "4bf92f3577b34da6a3ce929d0e0e4736")
    assert trace is not None
    new = _native_tree(trace.spans)
    assert new is not None
    same_tree(new, _build_tree_python(trace))


def _same_both_ways(trace: Trace | None) -> bool:
    """The native tree (if it takes the trace) and build_tree's both equal Python's; whether it was native."""
    assert trace is not None and trace.spans
    old = _build_tree_python(trace)
    new = _native_tree(trace.spans)
    if new is not None:
        same_tree(new, old)
    same_tree(build_tree(trace), old)
    return new is not None


def test_fixture_traces() -> None:
    natively = 0
    for _name, data in FIXTURE_TRACES:
        body = orjson.dumps({"result": data})
        for trace_id in sorted(_ids_in(data)):
            trace = parse_otlp_answer(body, trace_id)
            if trace is not None and trace.spans:
                natively += _same_both_ways(trace)
    assert natively >= 2  # the third holds a duplicate ID: Python's


@pytest.mark.parametrize("count", [50, 3000])
def test_mixed_traces(count: int) -> None:
    """tests/spanmix.py: another trace's span, a duplicate, an orphan, a negative duration, a self-parent, …"""
    _same_both_ways(parse_otlp_answer(bodies(count, 10, 10)[0], TRACE_ID))
    # … and the same without the spans Python would repair: then natively.
    trace = parse_otlp_answer(bodies(count, 10, 10)[0], TRACE_ID)
    assert trace is not None
    seen: set[str] = set()
    kept = []
    for span in trace.spans:
        if span.span_id not in seen and span.end_ns >= span.start_ns:
            seen.add(span.span_id)
            kept.append(span)
    assert _same_both_ways(Trace(trace.trace_id, tuple(kept)))


def test_the_native_tree_is_what_build_tree_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    native: Any = _native.MODULE.span_tree  # type: ignore[union-attr]

    def counting(spans: Any) -> Any:
        calls.append(len(spans))
        return native(spans)

    monkeypatch.setattr(_native, "MODULE", type("M", (), {"span_tree": staticmethod(counting)})())
    trace = Trace("1" * 32, (Span("0000000000000001", None, "svc", "op", 10, 100),))
    same_tree(build_tree(trace), _build_tree_python(trace))
    assert calls == [1]
