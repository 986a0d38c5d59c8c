"""As it was before issue 14's tree/analysis round (main 93050fc), kept to compare with.

The span tree, built once per trace and shared by the join, the analysis and the renderers.

Pure and iterative: real traces reach tens of thousands of spans and depths in the
thousands, so nothing here recurses. Malformed input (duplicate span IDs, orphans whose
parent is missing, cycles in parent links, negative durations) never raises; it is
repaired in the most useful way and recorded in `problems` so callers can report it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from itertools import repeat

from correlator.model import Span, Trace

__all__ = ["SpanTree", "bfs", "build_tree", "covered_ns"]


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


def _clean(span: Span, problems: list[str]) -> Span:
    if span.end_ns < span.start_ns:
        problems.append(f"span {span.span_id} has a negative duration; treated as 0")
        return replace(span, end_ns=span.start_ns)
    return span


def build_tree(trace: Trace) -> SpanTree:
    problems: list[str] = []
    by_id: dict[str, Span] = {}
    for span in trace.spans:
        if span.span_id in by_id:
            problems.append(f"duplicate span ID {span.span_id}; kept the first")
            continue
        by_id[span.span_id] = span if span.end_ns >= span.start_ns else _clean(span, problems)

    # Every span in start order once (the key is unique, so this is the order each sibling list and the
    # roots want): appending in that order leaves every list sorted, no sort per parent.
    ordered = sorted([(span.start_ns, -span.end_ns, sid) for sid, span in by_id.items()])
    children: dict[str, list[str]] = {sid: [] for sid in by_id}
    roots: list[str] = []
    orphans: list[str] = []
    self_loops: list[str] = []
    for _start, _minus_end, sid in ordered:
        parent = by_id[sid].parent_span_id
        if parent is None:
            roots.append(sid)
        elif parent == sid:
            self_loops.append(sid)
            roots.append(sid)
        elif parent in by_id:
            children[parent].append(sid)
        else:
            orphans.append(sid)
    # Reported in the spans' own order, as they were found.
    if self_loops:
        loops = set(self_loops)
        problems += [f"span {sid} is its own parent; treated as a root" for sid in by_id if sid in loops]
    if orphans:
        orphan_ids = set(orphans)
        first = next(sid for sid in by_id if sid in orphan_ids)
        problems.append(
            f"{len(orphans)} span(s) reference a parent that is not in the trace "
            f"(e.g. {first}); shown as extra roots"
        )

    def by_start(ids: list[str]) -> list[str]:
        return sorted(ids, key=lambda i: (by_id[i].start_ns, -by_id[i].end_ns, i))

    roots += orphans

    depth: dict[str, int] = {}
    order: list[str] = []

    def walk(root: str) -> None:
        stack = [(root, 0)]
        while stack:
            sid, d = stack.pop()
            if sid in depth:
                continue
            depth[sid] = d
            order.append(sid)
            kids = children[sid]
            if kids:  # most spans are leaves
                stack.extend(zip(reversed(kids), repeat(d + 1)))

    for root in roots:
        walk(root)
    # Spans still unvisited sit on a parent-link cycle: break it at the earliest span.
    while len(depth) < len(by_id):
        unvisited = by_start([sid for sid in by_id if sid not in depth])
        breaker = unvisited[0]
        problems.append(f"parent links form a cycle through span {breaker}; broken there")
        parent = by_id[breaker].parent_span_id
        if parent in children and breaker in children[parent]:
            children[parent].remove(breaker)
        roots.append(breaker)
        walk(breaker)

    self_ns: dict[str, int] = {}
    last_end = ordered[0][0] if ordered else 0
    for sid, span in by_id.items():
        kids = children[sid]
        lo, hi = span.start_ns, span.end_ns
        if hi > last_end:
            last_end = hi
        if not kids:
            self_ns[sid] = hi - lo
            continue
        # The union of the children clipped to the span (`covered_ns`), the children already by start.
        covered = 0
        cur_start = cur_end = None
        for kid in kids:
            child = by_id[kid]
            start, end = child.start_ns, child.end_ns
            if start < lo:
                start = lo
            if end > hi:
                end = hi
            if end <= start:
                continue
            if cur_end is None or start > cur_end:
                if cur_end is not None:
                    covered += cur_end - cur_start  # type: ignore[operator]
                cur_start, cur_end = start, end
            elif end > cur_end:
                cur_end = end
        if cur_end is not None:
            covered += cur_end - cur_start  # type: ignore[operator]
        self_ns[sid] = hi - lo - covered

    bounds = (ordered[0][0], last_end) if ordered else None
    return SpanTree(by_id, children, roots, depth, self_ns, order, problems, bounds)


def bfs(tree: SpanTree, start: str) -> list[str]:
    """`start` and every descendant, breadth first."""
    out, queue = [], deque([start])
    while queue:
        sid = queue.popleft()
        out.append(sid)
        queue.extend(tree.children[sid])
    return out
