"""The critical path: the chain of work that decides when the trace ends.

Jaeger UI's algorithm, made iterative: from the root's end, walk back through the child that
finished last before the cursor, recurse into it, and when a span has no such child left,
its remaining time is its own and the cursor moves to its start in the parent. Children are
first clipped to their parent (async work and clock skew make children outlive or precede
it), so the sections tile the root's interval exactly and never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from correlator.construct import fast_constructor
from correlator.sources import _native
from correlator.spantree import SpanTree, columns

__all__ = ["CriticalPath", "Section", "critical_path", "effective_bounds"]


class Section(NamedTuple):
    """A stretch of time during which `span_id` itself, not a child, held up the trace.

    A named tuple, not a frozen dataclass: a path through a 100k-span batch trace has 100k+ of them, and a
    tuple is made without three `object.__setattr__` calls each."""

    span_id: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class CriticalPath:
    span_ids: tuple[str, ...]  # root first, then by (clipped) start time
    sections: tuple[Section, ...]  # chronological, contiguous, non-empty
    held_ns: dict[str, int]  # per span on the path: total length of its sections (may be 0)


_critical_path = fast_constructor(CriticalPath)  # one per analysis, without the frozen `__init__`


def effective_bounds(tree: SpanTree) -> dict[str, tuple[int, int]]:
    """Each span clipped to its parent, top-down, as Jaeger UI sanitises before its walk."""
    roots = set(tree.roots)
    bounds: dict[str, tuple[int, int]] = {}
    by_id, parent_bounds = tree.by_id, bounds.get
    for sid in tree.order:  # pre-order: a parent is clipped before its children
        span = by_id[sid]
        start, end = span.start_ns, span.end_ns
        clip = parent_bounds(span.parent_span_id)  # type: ignore[arg-type]  # None is no key: no parent
        if clip is not None and sid not in roots:
            lo, hi = clip
            # min(max(start, lo), hi), max(min(end, hi), lo) as comparisons (once per span)
            start = lo if start < lo else hi if start > hi else start
            end = hi if end > hi else lo if end < lo else end
        bounds[sid] = (start, end if end > start else start)
    return bounds


def _by_end(tree: SpanTree, kids: list[str], lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(end, start, id) of `kids`, children of a span whose `effective_bounds` are (lo, hi), clipped to it as
    `effective_bounds` clips them; those clipped to nothing left out (they can hold no time); latest end first."""
    by_id = tree.by_id
    entries = []
    for kid in kids:
        span = by_id[kid]
        start, end = span.start_ns, span.end_ns
        start = lo if start < lo else hi if start > hi else start
        end = hi if end > hi else lo if end < lo else end
        if end > start:
            entries.append((-end, -start, kid))
    entries.sort()  # (-end, -start, id): the tuples' own order, no key function per child
    return [(-end, -start, kid) for end, start, kid in entries]


def _pick_root(tree: SpanTree, bounds: dict[str, tuple[int, int]]) -> str:
    """The root that ends last; true roots before orphans (a partial trace has only orphans)."""
    true_roots = [r for r in tree.roots if tree.by_id[r].parent_span_id is None] or tree.roots
    return max(true_roots, key=lambda r: (bounds[r][1], -bounds[r][0], r))


def critical_path(tree: SpanTree) -> CriticalPath:
    if not tree.roots:
        return CriticalPath((), (), {})
    # Natively when the extension has it (native/src/critical.rs: the same walk on the tree's columns, the same path,
    # sections and `held`; tests/test_critical_path_native.py); None: Python walks.
    native = getattr(_native.MODULE, "critical_path", None)
    if native is not None:
        cols = columns(tree)
        found = native(tree.roots, cols.ids, cols.spans, cols.starts, cols.durations, cols.kids, cols.order, cols.depths,
                       Section)
        if found is not None:
            return _critical_path(*found)
    return _critical_path_python(tree)


def _critical_path_python(tree: SpanTree) -> CriticalPath:
    """`critical_path` in Python: the reference, and the way for anything the native walk hands back."""
    # `effective_bounds`, worked out only where the walk looks: the roots (never clipped), then the children
    # of each span it enters, clipped to that span's (`_by_end`). A span is entered once, from its parent:
    # what is left of its children waits on the stack while a child is walked, no dict of progress per span.
    roots: dict[str, tuple[int, int]] = {}
    for r in tree.roots:
        span = tree.by_id[r]
        roots[r] = (span.start_ns, span.end_ns if span.end_ns > span.start_ns else span.start_ns)
    root = _pick_root(tree, roots)
    children = tree.children
    start, cursor = roots[root]
    entered = {root: start}  # span → its clipped start, for the path's order
    held: dict[str, int] = {root: 0}
    sections: list[tuple[str, int, int]] = []
    stack: list[tuple[str, int, list[tuple[int, int, str]], int]] = []  # (span, its start, children by end, next)
    current = root
    kids = _by_end(tree, children[root], start, cursor) if children[root] else []
    i = 0
    while True:
        while i < len(kids) and kids[i][0] > cursor:
            i += 1  # ends after the cursor: overlaps time already explained, never on the path
        section_start = kids[i][0] if i < len(kids) else start
        if cursor > section_start:
            sections.append((current, section_start, cursor))
            held[current] += cursor - section_start
        if i < len(kids):
            child_end, child_start, child = kids[i]
            stack.append((current, start, kids, i + 1))
            held.setdefault(child, 0)
            entered[child] = child_start
            current, start, cursor = child, child_start, child_end
            below = children[child]
            kids = _by_end(tree, below, child_start, child_end) if below else []
            i = 0
            continue
        if not stack:
            break
        cursor = start  # the finished child's start, in its parent
        current, start, kids, i = stack.pop()
    sections.reverse()
    depth = tree.depth
    order = [sid for _start, _depth, sid in sorted([(entered[sid], depth[sid], sid) for sid in held])]
    return _critical_path(tuple(order), tuple(map(Section._make, sections)), held)
