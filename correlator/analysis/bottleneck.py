"""Bottleneck: the critical-path span with the most time of its own."""

from __future__ import annotations

from correlator.analysis.common import MS, Context, fmt_ms, new_finding
from correlator.analysis.identity import known_label
from correlator.analysis.long_span import wait_clause
from correlator.model import Finding, Severity

__all__ = ["bottleneck"]

_CRITICAL_SHARE = 0.6  # more than half the trace in one span: nothing else matters as much


def bottleneck(ctx: Context) -> list[Finding]:
    if len(ctx.tree.by_id) < 2 or ctx.total_ns <= 0:
        return []  # a lone span is trivially 100 % of its trace: nothing to point at
    self_ns = ctx.tree.self_ns
    # The most own time first over the whole path (C-level), the tie-break only among the spans that have it:
    # the path of a 100k-span batch trace holds tens of thousands of spans.
    most = max(map(self_ns.__getitem__, ctx.path))
    sid = max((s for s in ctx.path if self_ns[s] == most), key=lambda s: (ctx.held.get(s, 0), s))
    own = self_ns[sid]
    share = own / ctx.total_ns
    if own <= 0 or share < ctx.settings.bottleneck_share:
        return []
    span = ctx.tree.by_id[sid]
    duration = span.duration_ns
    size = fmt_ms(duration) if own == duration else f"{fmt_ms(duration)}, {fmt_ms(own)} of its own"
    waited, wait_evidence = wait_clause(ctx, span)
    return [new_finding(
        "bottleneck", Severity.CRITICAL if share >= _CRITICAL_SHARE else Severity.WARNING,
        f"{known_label(span, ctx.tree.targets)} ({size}) is {share:.0%} of the trace — the bottleneck{waited}",
        (sid,),
        {"self_ms": own / MS, "duration_ms": duration / MS, "share": round(share, 4),
         "trace_ms": ctx.total_ns / MS, "critical_ms": ctx.held.get(sid, 0) / MS, **wait_evidence},
        ctx.held.get(sid, 0),
    )]
