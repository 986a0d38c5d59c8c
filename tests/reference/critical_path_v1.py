"""As it was before issue 14's tree/analysis round (main 93050fc), kept to compare with.

The critical path: the chain of work that decides when the trace ends.

Jaeger UI's algorithm, made iterative: from the root's end, walk back through the child that
finished last before the cursor, recurse into it, and when a span has no such child left,
its remaining time is its own and the cursor moves to its start in the parent. Children are
first clipped to their parent (async work and clock skew make children outlive or precede
it), so the sections tile the root's interval exactly and never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from correlator.spantree import SpanTree

__all__ = ["CriticalPath", "Section", "critical_path", "effective_bounds"]


@dataclass(frozen=True, slots=True)
class Section:
    """A stretch of time during which `span_id` itself, not a child, held up the trace."""

    span_id: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class CriticalPath:
    span_ids: tuple[str, ...]  # root first, then by (clipped) start time
    sections: tuple[Section, ...]  # chronological, contiguous, non-empty
    held_ns: dict[str, int]  # per span on the path: total length of its sections (may be 0)


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


def _pick_root(tree: SpanTree, bounds: dict[str, tuple[int, int]]) -> str:
    """The root that ends last; true roots before orphans (a partial trace has only orphans)."""
    true_roots = [r for r in tree.roots if tree.by_id[r].parent_span_id is None] or tree.roots
    return max(true_roots, key=lambda r: (bounds[r][1], -bounds[r][0], r))


def critical_path(tree: SpanTree) -> CriticalPath:
    if not tree.roots:
        return CriticalPath((), (), {})
    bounds = effective_bounds(tree)
    root = _pick_root(tree, bounds)
    by_end: dict[str, list[str]] = {}  # children by end, latest first; sorted on first visit
    taken: dict[str, int] = {}  # how far each span's by_end list has been consumed
    held: dict[str, int] = {root: 0}
    sections: list[Section] = []
    ancestors: list[tuple[str, int]] = []  # (span, its start) to return to: no recursion, no parent lookups
    current, cursor = root, bounds[root][1]
    while True:
        start = bounds[current][0]
        kids = by_end.get(current)
        if kids is None:
            kids = tree.children[current]
            if kids:  # most spans are leaves: no sort for them
                # A child clipped to nothing (wholly outside its parent) can hold no time.
                kids = sorted((c for c in kids if bounds[c][1] > bounds[c][0]),
                              key=lambda c: (-bounds[c][1], -bounds[c][0], c))
            by_end[current] = kids
        i = taken.get(current, 0)
        while i < len(kids) and bounds[kids[i]][1] > cursor:
            i += 1  # ends after the cursor: overlaps time already explained, never on the path
        child = kids[i] if i < len(kids) else None
        taken[current] = i + 1
        section_start = bounds[child][1] if child is not None else start
        if cursor > section_start:
            sections.append(Section(current, section_start, cursor))
            held[current] += cursor - section_start
        if child is not None:
            ancestors.append((current, start))
            held.setdefault(child, 0)
            current, cursor = child, bounds[child][1]
            continue
        if not ancestors:
            break
        current, cursor = ancestors.pop()[0], start
    sections.reverse()
    order = sorted(held, key=lambda sid: (bounds[sid][0], tree.depth[sid], sid))
    return CriticalPath(tuple(order), tuple(sections), held)
