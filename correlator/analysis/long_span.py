"""Long span: far above its own operation's typical duration in this trace, or simply too long."""

from __future__ import annotations

import statistics
from collections import defaultdict

from correlator.analysis.common import MS, Context, fmt_ms, label
from correlator.model import Finding, Severity, Span

__all__ = ["long_spans"]

_MIN_SAMPLES = 3  # a median of one or two spans says nothing about "typical"
# 0.3 ms against a 0.05 ms median is 6×, yet nobody should read about it.
_MIN_EXCESS_NS = 1 * MS


def long_spans(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    groups: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in tree.by_id.values():
        groups[(span.service, span.operation)].append(span)
    absolute_ns = s.long_span_absolute_ms * MS
    out: list[Finding] = []
    for spans in groups.values():
        median = statistics.median(sp.duration_ns for sp in spans) if len(spans) >= _MIN_SAMPLES else None
        for span in spans:
            # Absolute: the span's *own* time, else every ancestor of one slow call is "long" too.
            own = tree.self_ns[span.span_id]
            relative = (median is not None and span.duration_ns > s.long_span_factor * median
                        and span.duration_ns - median >= _MIN_EXCESS_NS)
            if not relative and own < absolute_ns:
                continue
            if relative:
                times = f"{span.duration_ns / median:.1f}×" if median else "far above"
                reason = f"{times} the median {fmt_ms(median or 0)} of its {len(spans)} {span.operation} spans"
            else:
                reason = f"{fmt_ms(own)} of its own time, above the {fmt_ms(absolute_ns)} limit"
            evidence: dict[str, object] = {"duration_ms": span.duration_ns / MS, "self_ms": own / MS,
                                           "rule": "relative" if relative else "absolute"}
            if median is not None:
                evidence.update(median_ms=median / MS, samples=len(spans))
            out.append(Finding("long_span", Severity.WARNING, f"{label(span)} took {fmt_ms(span.duration_ns)} — {reason}",
                               (span.span_id,), evidence,
                               impact_ns=span.duration_ns if span.span_id in ctx.held else 0))
    return out
