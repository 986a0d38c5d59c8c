"""Long span: far above the typical duration of the same operation in this trace, or simply too long.

"The same operation" is `operation_key`: same service, name and target, so a call to
`/customer` is never measured against calls to `/route` that share its span name. Calls
inside an N+1 loop are the loop's finding, not long spans of their own.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from correlator.model import Finding, Severity, Span
from correlator.spantree import SpanTree, columns
from tests.reference.analysis_v2.common import MS, Context, fmt_ms, label
from tests.reference.analysis_v2.events import wait_of
from tests.reference.analysis_v2.identity import OperationKey, operation_label, operation_name

__all__ = ["long_spans", "wait_clause"]

_MIN_SAMPLES = 3  # a median of one or two spans says nothing about "typical"
# 0.3 ms against a 0.05 ms median is 6×, yet nobody should read about it.
_MIN_EXCESS_NS = 1 * MS


def wait_clause(ctx: Context, span: Span) -> tuple[str, dict[str, str]]:
    """` — waited for a lock ('Waiting for lock behind 9 transactions')` when the span's own words say so."""
    found = wait_of(span, ctx.span_logs.get(span.span_id, ()))
    if found is None:
        return "", {}
    what, text = found
    quoted = text if len(text) <= 100 else text[:99] + "…"
    waited = "waited" if what == "something" else f"waited for {what}"
    return f" — {waited} ('{quoted}')", {"waited_for": what, "wait_text": text}


def _by_name(tree: SpanTree) -> list[list[int]]:
    """Positions of the spans of each (service, `operation_name`), in the tree's order, groups by first span."""
    spans = columns(tree).spans
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(list)  # (service, operation): the regex runs per pair
    for i, span in enumerate(spans):
        by_pair[span.service, span.operation].append(i)
    names: dict[str, str] = {}  # operation → operation_name: one call per distinct name
    by_name: dict[tuple[str, str], list[int]] = {}
    merged = False
    for (service, operation), positions in by_pair.items():  # by first span: the order of each name's first span
        name = names.get(operation)
        if name is None:
            name = names[operation] = operation_name(spans[positions[0]])
        found = by_name.get((service, name))
        if found is None:
            by_name[(service, name)] = positions
        else:  # two operations of one name (`/users/1`, `/users/2`)
            found += positions
            merged = True
    return [sorted(group) for group in by_name.values()] if merged else list(by_name.values())


def _may_be_long(tree: SpanTree, named: list[int], factor: float, absolute_ns: float) -> bool:
    """Whether any span of one name may be long. A same-target group's median is at least the fastest
    same-name span: when no span clears that bound (nor the absolute limit), none can be long and no
    target is needed. Both tests grow with the duration: the longest span decides for the group."""
    cols = columns(tree)
    durations = list(map(cols.durations.__getitem__, named))
    fastest, longest = min(durations), max(durations)
    return (longest > factor * fastest and longest - fastest >= _MIN_EXCESS_NS) or \
        max(map(cols.self_ns.__getitem__, named)) >= absolute_ns


def long_spans(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    in_loops = {sp.span_id for _parent, members, _shape in ctx.n_plus_one for sp in members}
    absolute_ns = s.long_span_absolute_ms * MS
    groups: dict[OperationKey, list[Span]] = defaultdict(list)
    keys, by_position = ctx.keys, columns(tree).spans
    for named in _by_name(tree):
        if _may_be_long(tree, named, s.long_span_factor, absolute_ns):
            for i in named:
                groups[keys[by_position[i].span_id]].append(by_position[i])
    out: list[Finding] = []
    for spans in groups.values():
        median = statistics.median(sp.duration_ns for sp in spans) if len(spans) >= _MIN_SAMPLES else None
        for span in spans:
            if span.span_id in in_loops:
                continue
            # Absolute: the span's *own* time, else every ancestor of one slow call is "long" too.
            own = tree.self_ns[span.span_id]
            relative = (median is not None and span.duration_ns > s.long_span_factor * median
                        and span.duration_ns - median >= _MIN_EXCESS_NS)
            if not relative and own < absolute_ns:
                continue
            if relative:
                times = f"{span.duration_ns / median:.1f}×" if median else "far above"
                reason = f"{times} the median {fmt_ms(median or 0)} of its {len(spans)} {operation_label(span)} spans"
            else:
                reason = f"{fmt_ms(own)} of its own time, above the {fmt_ms(absolute_ns)} limit"
            waited, wait_evidence = wait_clause(ctx, span)
            evidence: dict[str, object] = {"duration_ms": span.duration_ns / MS, "self_ms": own / MS,
                                           "rule": "relative" if relative else "absolute", **wait_evidence}
            if median is not None:
                evidence.update(median_ms=median / MS, samples=len(spans))
            out.append(Finding("long_span", Severity.WARNING,
                               f"{label(span)} took {fmt_ms(span.duration_ns)}{waited} — {reason}",
                               (span.span_id,), evidence,
                               impact_ns=span.duration_ns if span.span_id in ctx.held else 0))
    return out
