"""The span tree, built once per trace and shared by the join, the analysis and the renderers.

Pure and iterative: real traces reach tens of thousands of spans and depths in the
thousands, so nothing here recurses. Malformed input (duplicate span IDs, orphans whose
parent is missing, cycles in parent links, negative durations) never raises; it is
repaired in the most useful way and recorded in `problems` so callers can report it.

Built in positions (the spans' index in `by_id`'s order) with lists, then turned into the
ID-keyed dicts callers read: a 100k-span trace is a few passes of C-level `map`/`zip` and tight
loops over integers, not a dict lookup by ID string per span per step. The lists stay on the
tree (`SpanTree.cols`) for the detectors and the render, which read every span.

A trace with nothing to repair is built by the native extension when it is installed (native/src/tree.rs: the
same dicts, lists and columns, tests/test_spantree_native.py); `_build_tree_python` is the reference.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import attrgetter, gt, neg, sub

from correlator.construct import fast_constructor
from correlator.sources import _native

if os.environ.get("CORRELATOR_REQUIRE_NATIVE") == "1" and not hasattr(_native.MODULE, "span_tree"):
    raise ImportError("CORRELATOR_REQUIRE_NATIVE=1 but the extension lacks the span tree (pip install ./native)")
from correlator.model import Span, Trace

__all__ = ["Columns", "SpanTree", "bfs", "build_tree", "columns", "covered_ns"]

_ID, _PARENT = attrgetter("span_id"), attrgetter("parent_span_id")
_START, _END = attrgetter("start_ns"), attrgetter("end_ns")


@dataclass(frozen=True, slots=True)
class Columns:
    """The tree by position: position i is the i-th span of `by_id` (its order), every list parallel.

    For passes over every span (the detectors): an index into a list instead of a lookup by ID, and
    `map` over a column instead of an attribute read per span.
    """

    ids: list[str]
    spans: list[Span]  # as cleaned (negative durations made 0)
    starts: list[int]
    durations: list[int]  # end - start, never negative
    self_ns: list[int]  # own time, as `SpanTree.self_ns`
    kids: list[Sequence[int]]  # children's positions by start, as `SpanTree.children` (a leaf's: one shared `()`)
    parents: list[int]  # positions that have children, in `by_id` order
    order: list[int]  # `SpanTree.order` as positions
    depths: list[int]  # the depth of each span of `order` (parallel to it), as `SpanTree.depth`


@dataclass(slots=True)
class SpanTree:
    by_id: dict[str, Span]
    children: dict[str, list[str]]  # parent id → child ids, by start time
    roots: list[str]  # by start time; true roots first, then orphans / cycle breaks
    depth: dict[str, int]
    self_ns: dict[str, int]
    order: list[str]  # depth-first pre-order, children by start time
    problems: list[str] = field(default_factory=list)
    # The trace's bounds, known to `build_tree` from its own pass: the property is read by the analysis,
    # the join and the render (a min over every span each time, 100k spans: ~5 ms a read).
    bounds: tuple[int, int] | None = None
    # span id → `identity.target`, for the spans the analysis asked about; the render reuses them.
    targets: dict[str, str | None] = field(default_factory=dict)
    # The same tree by position (`build_tree` keeps its own; `columns()` makes them for a tree built by hand).
    cols: Columns | None = None

    @property
    def start_ns(self) -> int:
        if self.bounds is not None:
            return self.bounds[0]
        return min((s.start_ns for s in self.by_id.values()), default=0)

    @property
    def end_ns(self) -> int:
        if self.bounds is not None:
            return self.bounds[1]
        return max((s.end_ns for s in self.by_id.values()), default=0)


def covered_ns(intervals: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Length of the union of `intervals` clipped to [lo, hi]."""
    total = 0
    cur_start = cur_end = None
    for start, end in sorted(intervals):
        # Comparisons, not min()/max(): this runs per child of every span (build_tree, fan-out).
        if start < lo:
            start = lo
        if end > hi:
            end = hi
        if end <= start:
            continue
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start  # type: ignore[operator]
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    if cur_end is not None:
        total += cur_end - cur_start  # type: ignore[operator]
    return total


def _repaired(spans: tuple[Span, ...], problems: list[str]) -> dict[str, Span]:
    """by ID, the first of each ID kept and negative durations made 0, each repair in `problems` (span order)."""
    by_id: dict[str, Span] = {}
    for span in spans:
        if span.span_id in by_id:
            problems.append(f"duplicate span ID {span.span_id}; kept the first")
            continue
        if span.end_ns < span.start_ns:
            problems.append(f"span {span.span_id} has a negative duration; treated as 0")
            span = replace(span, end_ns=span.start_ns)
        by_id[span.span_id] = span
    return by_id


def _start_order(starts: list[int], ends: list[int], ids: list[str]) -> list[int]:
    """Positions by (start, -end, id): the order of every sibling list and of the roots."""
    if len(set(starts)) == len(starts):  # no two spans start together: the start alone decides (ints, not tuples)
        return sorted(range(len(starts)), key=starts.__getitem__)
    return [entry[3] for entry in sorted(zip(starts, map(neg, ends), ids, range(len(starts)), strict=True))]


def _walk(roots: list[int], kids: list[Sequence[int]], order: list[int], depths: list[int]) -> None:
    """Depth-first pre-order from `roots` (each span is in one children list at most: no visited set)."""
    stack = roots[::-1]
    levels = [0] * len(roots)
    push, pop, push_levels, pop_level = stack.extend, stack.pop, levels.extend, levels.pop
    visit, at = order.append, depths.append
    while stack:
        i = pop()
        d = pop_level()
        visit(i)
        at(d)
        below = kids[i]
        if below:  # most spans are leaves
            push(below[::-1])
            push_levels([d + 1] * len(below))


def _own_time(kids: list[Sequence[int]], parents: list[int], starts: list[int], ends: list[int], own: list[int]) -> None:
    """`own[p]` less the union of its children clipped to it (`covered_ns`; children already by start)."""
    for p in parents:
        lo, hi = starts[p], ends[p]
        covered = 0
        cur_start = cur_end = lo
        for k in kids[p]:
            start, end = starts[k], ends[k]
            if start < lo:
                start = lo
            if end > hi:
                end = hi
            if end <= start:
                continue
            if start > cur_end:
                covered += cur_end - cur_start
                cur_start, cur_end = start, end
            elif end > cur_end:
                cur_end = end
        own[p] -= covered + cur_end - cur_start


def _break_cycles(kids: list[Sequence[int]], kid_ids: list[list[str]], roots: list[int], order: list[int], depths: list[int],
                  spans: tuple[list[int], list[int], list[str], list[int | None]], problems: list[str]) -> None:
    """Spans the walk did not reach sit on a parent-link cycle: break each at its earliest span.

    The unvisited spans are sorted once and taken in that order (each cycle's earliest is the first of
    them not reached yet), not searched again after every cycle: many small cycles stay linear.
    """
    starts, ends, ids, parent_pos = spans
    seen = set(order)
    unvisited = sorted((i for i in range(len(ids)) if i not in seen), key=lambda i: (starts[i], -ends[i], ids[i]))
    for breaker in unvisited:
        if breaker in seen:
            continue
        problems.append(f"parent links form a cycle through span {ids[breaker]}; broken there")
        p = parent_pos[breaker]
        if p is not None and breaker in kids[p]:
            kids[p] = [k for k in kids[p] if k != breaker]
            kid_ids[p].remove(ids[breaker])
        roots.append(breaker)
        reached = len(order)
        _walk([breaker], kids, order, depths)
        seen.update(order[reached:])


# One of each per trace, without the dataclass `__init__` (the frozen one's `object.__setattr__` per field): every field
# passed, in declaration order (tests/test_construct.py).
_columns = fast_constructor(Columns)
_tree = fast_constructor(SpanTree)


def _native_tree(spans: tuple[Span, ...]) -> SpanTree | None:
    """The tree built by the extension (native/src/tree.rs): the same dicts, lists and problems, for a trace with
    nothing to repair (unique IDs, no negative duration, no cycle); None otherwise, or without the extension."""
    native = getattr(_native.MODULE, "span_tree", None)
    parts = native(spans) if native is not None else None
    if parts is None:
        return None
    (by_id, ids, span_list, starts, durations, own, kids, parents, roots, self_loops, orphans, order_ids, children, depth,
     self_ns, start_ns, end_ns, order, depths) = parts
    problems = [f"span {ids[i]} is its own parent; treated as a root" for i in self_loops]
    if orphans:
        problems.append(
            f"{len(orphans)} span(s) reference a parent that is not in the trace "
            f"(e.g. {ids[min(orphans)]}); shown as extra roots"
        )
    cols = _columns(ids, span_list, starts, durations, own, kids, parents, order, depths)
    return _tree(by_id, children, roots, depth, self_ns, order_ids, problems, (start_ns, end_ns), {}, cols)


def build_tree(trace: Trace) -> SpanTree:
    if type(trace.spans) is tuple and (tree := _native_tree(trace.spans)) is not None:
        return tree
    return _build_tree_python(trace)


def _build_tree_python(trace: Trace) -> SpanTree:
    """The reference (and the way for a trace with something to repair)."""
    problems: list[str] = []
    spans = trace.spans
    ids = list(map(_ID, spans))
    starts, ends = list(map(_START, spans)), list(map(_END, spans))
    by_id = dict(zip(ids, spans, strict=True))
    if len(by_id) != len(ids) or any(map(gt, starts, ends)):  # duplicates or negative durations: repair
        by_id = _repaired(spans, problems)
        ids = list(by_id)
        cleaned = list(by_id.values())
        starts, ends = list(map(_START, cleaned)), list(map(_END, cleaned))
    span_list = list(by_id.values())
    n = len(ids)
    pos = dict(zip(ids, range(n), strict=True))
    parent_ids = list(map(_PARENT, span_list))
    parent_pos = list(map(pos.get, parent_ids))

    # Every span in start order once: appending in that order leaves every children list sorted.
    # A list for each span with children, the shared `()` for each leaf (most spans): fewer objects to make
    # and, afterwards, fewer for the cyclic collector to walk.
    kids: list[Sequence[int]] = [()] * n
    kid_ids: list[list[str]] = [[] for _ in range(n)]  # the same by ID: `children`'s lists, made as they fill
    roots: list[int] = []
    orphans: list[int] = []
    self_loops: list[int] = []
    for i in _start_order(starts, ends, ids):
        p = parent_pos[i]
        if p is None:
            if parent_ids[i] is None:
                roots.append(i)
            else:
                orphans.append(i)
        elif p == i:
            self_loops.append(i)
            roots.append(i)
        else:
            below = kids[p]
            if below:
                below.append(i)  # type: ignore[attr-defined]  # a list once it has a child
            else:
                kids[p] = [i]
            kid_ids[p].append(ids[i])
    # Reported in the spans' own order, as they were found.
    if self_loops:
        problems += [f"span {ids[i]} is its own parent; treated as a root" for i in sorted(self_loops)]
    if orphans:
        problems.append(
            f"{len(orphans)} span(s) reference a parent that is not in the trace "
            f"(e.g. {ids[min(orphans)]}); shown as extra roots"
        )
    roots += orphans

    order: list[int] = []
    depths: list[int] = []
    _walk(roots, kids, order, depths)
    if len(order) < n:
        _break_cycles(kids, kid_ids, roots, order, depths, (starts, ends, ids, parent_pos), problems)

    parents = list(compress(range(n), kids))
    durations = list(map(sub, ends, starts))
    own = durations.copy()
    _own_time(kids, parents, starts, ends, own)

    to_ids = ids.__getitem__
    order_ids = list(map(to_ids, order))
    children = dict(zip(ids, kid_ids, strict=True))
    bounds = (min(starts), max(ends)) if n else None
    cols = Columns(ids, span_list, starts, durations, own, kids, parents, order, depths)
    return SpanTree(by_id, children, list(map(to_ids, roots)), dict(zip(order_ids, depths, strict=True)),
                    dict(zip(ids, own, strict=True)), order_ids, problems, bounds, cols=cols)


def columns(tree: SpanTree) -> Columns:
    """The tree's `Columns`: `build_tree`'s, or made from the dicts of a tree built another way (and kept)."""
    if tree.cols is None:
        ids = list(tree.by_id)
        span_list = list(tree.by_id.values())
        pos = dict(zip(ids, range(len(ids)), strict=True))
        kids: list[Sequence[int]] = [[pos[k] for k in tree.children.get(sid, ())] for sid in ids]
        starts = list(map(_START, span_list))
        durations = list(map(sub, map(_END, span_list), starts))
        tree.cols = Columns(ids, span_list, starts, durations, [tree.self_ns[sid] for sid in ids], kids,
                            list(compress(range(len(ids)), kids)), [pos[sid] for sid in tree.order],
                            [tree.depth[sid] for sid in tree.order])
    return tree.cols


def bfs(tree: SpanTree, start: str) -> list[str]:
    """`start` and every descendant, breadth first."""
    out, queue = [], deque([start])
    while queue:
        sid = queue.popleft()
        out.append(sid)
        queue.extend(tree.children[sid])
    return out
