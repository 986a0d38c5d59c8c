"""N+1: one call per item — many sibling spans doing the same thing, one after another."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence

from correlator.config import AnalysisSettings
from correlator.model import Finding, Severity, Span
from correlator.spantree import SpanTree, columns
from tests.reference.analysis_v2.common import MS, Context, by_start, fmt_ms, is_timeout, shorten
from tests.reference.analysis_v2.identity import (
    OperationKey,
    normalise_path,
    normalise_statement,
    target,
)

__all__ = ["n_plus_one", "n_plus_one_groups", "normalise_path", "normalise_statement", "sequential_share"]


def _shape(span: Span) -> str:
    """What the call does, literals and IDs stripped: the statement, the route, else the name."""
    attrs = span.attributes
    for key in ("db.query.text", "db.statement"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return normalise_statement(value)
    for key in ("url.template", "http.route"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("url.path", "http.target"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return f"{span.operation} {normalise_path(value)}"
    name = normalise_path(span.operation)
    called = target(span)  # an RPC method, a destination, a URL's path, a peer
    return f"{name} → {called}" if called and called not in name else name


def sequential_share(spans: Sequence[Span]) -> float:
    """Share of neighbouring pairs (by start) that do not overlap: 1.0 is a plain loop."""
    ordered = by_start(spans)
    if len(ordered) < 2:
        return 0.0
    return sum(1 for a, b in itertools.pairwise(ordered) if b.start_ns >= a.end_ns) / (len(ordered) - 1)


def n_plus_one_groups(tree: SpanTree, settings: AnalysisSettings,
                      keys: Mapping[str, OperationKey]) -> tuple[tuple[str, tuple[Span, ...], str], ...]:
    """(parent, members by start, shape) for every sibling group of one operation that looks like a loop."""
    groups = []
    cols = columns(tree)
    for p in cols.parents:  # the spans with children, in the tree's order
        if len(cols.kids[p]) < settings.n_plus_one_min_count:
            continue
        parent = cols.ids[p]
        kids = tree.children[parent]
        by_key: dict[OperationKey, list[Span]] = defaultdict(list)
        for kid in kids:  # already by start time
            by_key[keys[kid]].append(tree.by_id[kid])
        for spans in by_key.values():
            if len(spans) >= settings.n_plus_one_min_count and \
                    sequential_share(spans) >= settings.n_plus_one_sequential_share:
                groups.append((parent, tuple(spans), _shape(spans[0])))
    return tuple(groups)


def _retry_words(retried: list[Span]) -> str:
    """`2 retries after timeouts`, `1 retry after an error`."""
    n = len(retried)
    timeouts = sum(1 for sp in retried if is_timeout(sp))
    if timeouts == n:
        cause = "timeouts" if n > 1 else "a timeout"
    else:
        cause = "errors" if n > 1 else "an error"
    return f"{n} {'retry' if n == 1 else 'retries'} after {cause}"


def n_plus_one(ctx: Context) -> list[Finding]:
    out = []
    by_id = ctx.tree.by_id
    for parent, spans, shape in ctx.n_plus_one:
        total = sum(sp.duration_ns for sp in spans)
        saved = total - max(sp.duration_ns for sp in spans)  # one batched call ≈ the slowest single one
        retry_ids = [sp.span_id for sp in spans if sp.span_id in ctx.retries]
        evidence: dict[str, object] = {
            "count": len(spans), "total_ms": total / MS, "saved_ms": saved / MS, "statement": shape,
            "service": spans[0].service, "operation": spans[0].operation, "parent_span_id": parent,
            "sequential_share": round(sequential_share(spans), 3)}
        what = f"{len(spans)} × {shorten(shape)}"
        if retry_ids:
            retried = [by_id[ctx.retries[sid]] for sid in retry_ids]
            what = f"{len(spans) - len(retry_ids)} × {shorten(shape)} + {_retry_words(retried)}"
            evidence.update(distinct_calls=len(spans) - len(retry_ids), retries=len(retry_ids), retry_span_ids=retry_ids,
                            failed_span_ids=[sp.span_id for sp in retried])
        # A call far slower than its loop-mates is evidence here, not a long-span finding of its own.
        durations = sorted(sp.duration_ns for sp in spans)
        median = durations[len(durations) // 2]  # upper median: an outlier needs a clear majority below it
        slow = [sp for sp in spans if median > 0 and sp.duration_ns > ctx.settings.long_span_factor * median
                and sp.duration_ns - median >= MS]
        slowest = ""
        if slow:
            worst = max(slow, key=lambda sp: sp.duration_ns)
            slowest = f"; slowest {fmt_ms(worst.duration_ns)}, {worst.duration_ns / median:.1f}× the median {fmt_ms(median)}"
            evidence.update(median_ms=median / MS, slow_span_ids=[sp.span_id for sp in slow])
        out.append(Finding(
            "n_plus_one", Severity.WARNING,
            f"{what} ({fmt_ms(total)}{slowest}) — N+1; batching would save ~{fmt_ms(saved)}",
            tuple(sp.span_id for sp in spans),
            evidence,
            # The loop's whole time counts where it sits on the critical path (children included).
            impact_ns=sum(sp.duration_ns for sp in spans if sp.span_id in ctx.held),
        ))
    return out
