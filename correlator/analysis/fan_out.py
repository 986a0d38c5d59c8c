"""Fan-out: children that run in parallel (good), and independent calls made one after another."""

from __future__ import annotations

from correlator.analysis.common import MS, Context, fmt_ms, label
from correlator.analysis.n_plus_one import sequential_share
from correlator.model import Finding, Severity, Span
from correlator.spantree import covered_ns

__all__ = ["fan_out"]

_GOOD_PARALLELISM = 1.5
_MAX_FINDINGS = 10  # per flavour; info only, the ones that matter most are what a person reads


def _overlapping(spans: list[Span]) -> int:
    """How many of `spans` overlap at least one sibling."""
    ordered = sorted(spans, key=lambda sp: (sp.start_ns, sp.end_ns))
    marked: set[int] = set()
    holder, reach = 0, ordered[0].end_ns
    for i in range(1, len(ordered)):
        if ordered[i].start_ns < reach:
            marked.update((holder, i))
        if ordered[i].end_ns > reach:
            holder, reach = i, ordered[i].end_ns
    return len(marked)


def _callee(span: Span) -> str:
    peer = span.attributes.get("peer.service") or span.attributes.get("server.address")
    return str(peer) if span.kind == "client" and peer else span.service


def fan_out(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    in_loops = {sp.span_id for _parent, members, _shape in ctx.n_plus_one for sp in members}
    parallel: list[tuple[int, str, int, int, int, int]] = []  # (overlap saved, parent, n, overlapping, Σ, wall)
    sequential: list[tuple[int, str, list[Span], int]] = []  # (could save, parent, calls, Σ)
    for parent, kids in tree.children.items():
        if len(kids) < max(2, s.fan_out_min_children):
            continue
        spans = [tree.by_id[k] for k in kids]
        lo, hi = min(sp.start_ns for sp in spans), max(sp.end_ns for sp in spans)
        wall = covered_ns([(sp.start_ns, sp.end_ns) for sp in spans], lo, hi)
        total = sum(sp.duration_ns for sp in spans)
        if wall > 0 and total > _GOOD_PARALLELISM * wall:
            overlapping = _overlapping(spans)
            if overlapping >= s.fan_out_min_children:
                parallel.append((total - wall, parent, len(spans), overlapping, total, wall))
                continue
        me = tree.by_id[parent].service
        calls = [sp for sp in spans if sp.span_id not in in_loops and (sp.kind == "client" or sp.service != me)]
        if len(calls) >= 2 and len({_callee(sp) for sp in calls}) >= 2 and sequential_share(calls) == 1.0:
            sum_calls = sum(sp.duration_ns for sp in calls)
            saved = sum_calls - max(sp.duration_ns for sp in calls)
            if saved >= s.gap_min_ms * MS:
                sequential.append((saved, parent, calls, sum_calls))
    out = []
    for _saved, parent, n, overlapping, total, wall in sorted(parallel, key=lambda c: (-c[0], c[1]))[:_MAX_FINDINGS]:
        out.append(Finding(
            "fan_out", Severity.INFO,
            f"{label(tree.by_id[parent])} runs {overlapping} of its {n} calls in parallel "
            f"(parallelism {total / wall:.1f}×: {fmt_ms(total)} of work in {fmt_ms(wall)}) — good",
            (parent, *tree.children[parent]),
            {"children": n, "overlapping": overlapping, "parallelism": round(total / wall, 2),
             "sum_ms": total / MS, "wall_ms": wall / MS},
        ))
    for saved, parent, calls, sum_calls in sorted(sequential, key=lambda c: (-c[0], c[1]))[:_MAX_FINDINGS]:
        out.append(Finding(
            "fan_out", Severity.INFO,
            f"{label(tree.by_id[parent])} calls {', '.join(dict.fromkeys(_callee(sp) for sp in calls))} one after "
            f"another ({fmt_ms(sum_calls)}); if independent, in parallel they could save ~{fmt_ms(saved)}",
            (parent, *(sp.span_id for sp in calls)),
            {"sequential_calls": len(calls), "sum_ms": sum_calls / MS, "saved_ms": saved / MS},
            impact_ns=min(saved, sum(ctx.held.get(sp.span_id, 0) for sp in calls)),
        ))
    return out
