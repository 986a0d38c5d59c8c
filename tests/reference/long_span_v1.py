"""As it was before issue 14's tree/analysis round (main 93050fc), kept to compare with.

Long span: far above the typical duration of the same operation in this trace, or simply too long.

"The same operation" is `operation_key`: same service, name and target, so a call to
`/customer` is never measured against calls to `/route` that share its span name. Calls
inside an N+1 loop are the loop's finding, not long spans of their own.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from correlator.analysis.common import MS, Context, fmt_ms, label
from correlator.analysis.events import wait_of
from correlator.analysis.identity import OperationKey, operation_label, operation_name
from correlator.model import Finding, Severity, Span

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


def long_spans(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    in_loops = {sp.span_id for _parent, members, _shape in ctx.n_plus_one for sp in members}
    absolute_ns = s.long_span_absolute_ms * MS
    by_name: dict[tuple[str, str], list[Span]] = defaultdict(list)
    names: dict[str, str] = {}  # operation → operation_name: one call per distinct name
    for span in tree.by_id.values():
        name = names.get(span.operation)
        if name is None:
            name = names[span.operation] = operation_name(span)
        by_name[(span.service, name)].append(span)
    groups: dict[OperationKey, list[Span]] = defaultdict(list)
    factor, self_ns = s.long_span_factor, tree.self_ns
    for named in by_name.values():
        # A same-target group's median is at least the fastest same-name span: when nothing clears
        # that bound (nor the absolute limit), no span here can be long, and no target is needed.
        # end - start, not the `duration_ns` property: this reads every span.
        fastest = min([sp.end_ns - sp.start_ns for sp in named])
        if not any((sp.end_ns - sp.start_ns > factor * fastest and sp.end_ns - sp.start_ns - fastest >= _MIN_EXCESS_NS)
                   or self_ns[sp.span_id] >= absolute_ns for sp in named):
            continue
        for span in named:
            groups[ctx.keys[span.span_id]].append(span)
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
