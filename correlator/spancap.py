"""Pure: which spans to keep when a trace has more than `jaeger.max_spans`, and a sentence saying what went.

Keeping the first N spans of the answer (its order is the storage's: by resource and scope)
drops an arbitrary part — often a whole service, or the root. What a reader needs from a cut
trace is its shape and its failures, so the kept spans are chosen in this order:

1. every error span and every span above it (the error's path to the root: the root-cause
   analysis stays right);
2. then the rest breadth-first from the roots, earlier starts first within a depth: the top of the
   tree stays whole down to some depth, and a kept span's duration still bounds what is missing
   below it.

The kept spans stay in the answer's order, so everything downstream sees a plain (smaller) trace.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from correlator.model import Span, Trace

__all__ = ["SpanCut", "cap_spans"]


@dataclass(frozen=True, slots=True)
class SpanCut:
    """What `cap_spans` dropped."""

    kept: int
    total: int
    kept_depth: int  # every span at this depth or above is kept
    dropped_depths: tuple[int, int]  # shallowest and deepest dropped depth (0 = a root)
    dropped_services: tuple[tuple[str, int], ...]  # most dropped first
    dropped_start_ns: int
    dropped_end_ns: int

    def sentence(self, limit_name: str = "jaeger.max_spans") -> str:
        dropped = self.total - self.kept
        shallow, deep = self.dropped_depths
        depths = f"depth {shallow}" if shallow == deep else f"depths {shallow}–{deep}"
        services = ", ".join(f"{name} {count:,}" for name, count in self.dropped_services[:3])
        more = f" and {len(self.dropped_services) - 3} more services" if len(self.dropped_services) > 3 else ""
        top = ("the tree is whole down to depth " + str(self.kept_depth)) if self.kept_depth >= 0 else "no depth is whole"
        return (f"kept {self.kept:,} of {self.total:,} spans ({limit_name}): every error span and the spans above it, "
                f"then the top of the tree ({top}); {dropped:,} deeper spans are not shown ({depths}; {services}{more})")


def _depths(spans: tuple[Span, ...]) -> list[int]:
    """Each span's depth (a span whose parent is not in the trace is a root, depth 0); cycles count as roots."""
    index = {span.span_id: i for i, span in enumerate(spans)}
    parent = [index.get(span.parent_span_id, -1) if span.parent_span_id else -1 for span in spans]
    depth = [-1] * len(spans)
    for i in range(len(spans)):
        chain: list[int] = []
        j = i
        while j != -1 and depth[j] == -1 and len(chain) <= len(spans):
            chain.append(j)
            depth[j] = -2  # on the current chain: a cycle stops here
            j = parent[j]
        base = depth[j] if j != -1 and depth[j] >= 0 else -1
        for k in reversed(chain):
            base += 1
            depth[k] = base
    return depth


def cap_spans(trace: Trace, limit: int) -> tuple[Trace, SpanCut | None]:
    """`trace` with at most `limit` spans chosen as the module says, and what was cut (None when nothing was)."""
    spans = trace.spans
    if len(spans) <= limit:
        return trace, None
    depth = _depths(spans)
    index = {span.span_id: i for i, span in enumerate(spans)}
    keep = bytearray(len(spans))
    kept = 0
    # 1. Errors and their ancestors, shallowest errors first (a limit smaller than that set keeps the top ones).
    for i in sorted((i for i, span in enumerate(spans) if span.status == "error"), key=lambda i: (depth[i], spans[i].start_ns)):
        chain: list[int] = []
        on_chain: set[int] = set()
        j: int | None = i
        while j is not None and not keep[j] and j not in on_chain:  # a parent cycle ends the walk
            chain.append(j)
            on_chain.add(j)
            parent = spans[j].parent_span_id
            j = index.get(parent) if parent else None
        if kept + len(chain) > limit:
            continue
        for k in chain:
            keep[k] = 1
        kept += len(chain)
    # 2. Breadth-first: by depth, earlier starts first.
    if kept < limit:
        for i in sorted(range(len(spans)), key=lambda i: (depth[i], spans[i].start_ns)):
            if kept >= limit:
                break
            if not keep[i]:
                keep[i] = 1
                kept += 1
    dropped = [i for i in range(len(spans)) if not keep[i]]
    shallowest = min(depth[i] for i in dropped)
    services = Counter(spans[i].service for i in dropped)
    cut = SpanCut(
        kept=kept, total=len(spans), kept_depth=shallowest - 1,
        dropped_depths=(shallowest, max(depth[i] for i in dropped)),
        dropped_services=tuple(sorted(services.items(), key=lambda item: (-item[1], item[0]))),
        dropped_start_ns=min(spans[i].start_ns for i in dropped), dropped_end_ns=max(spans[i].end_ns for i in dropped),
    )
    return Trace(trace.trace_id, tuple(span for i, span in enumerate(spans) if keep[i]), trace.warnings), cut
