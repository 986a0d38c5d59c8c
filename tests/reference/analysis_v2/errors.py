"""Errors: the root cause of a failure, and the errors the request recovered from.

The root cause is the deepest failing span whose children did not fail. It is critical only
when its failure reached the request: the failing chain climbs to the root, or passes a
failed entry (server or consumer) span. A failure nobody above it saw — a call that timed
out and was retried, an error caught and handled — is a warning, grouped per operation:
"2 × redis: GetDriver timed out — recovered, each retried successfully".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from correlator.model import Finding, Severity, Span, SpanEvent
from tests.reference.analysis_v2.common import (
    ERROR_LEVELS,
    Context,
    error_detail,
    is_timeout,
    label,
    shorten,
)
from tests.reference.analysis_v2.identity import OperationKey

__all__ = ["errors"]

_ENTRY_KINDS = ("server", "consumer")


def _exception(event: SpanEvent) -> dict[str, Any]:
    trace = event.attributes.get("exception.stacktrace")
    first_line = next((ln.strip() for ln in str(trace).splitlines() if ln.strip()), None) if trace else None
    return {"type": event.attributes.get("exception.type"), "message": event.attributes.get("exception.message"),
            "stacktrace": first_line}


def _error_logs(ctx: Context, sid: str) -> list[dict[str, Any]]:
    return [{"id": ln.id, "timestamp_ns": ln.timestamp_ns, "level": ln.level, "line": ln.line}
            for ln in ctx.span_logs.get(sid, ()) if (ln.level or "").lower() in ERROR_LEVELS]


def _root_cause(ctx: Context, sid: str, propagated: list[str]) -> Finding:
    span = ctx.tree.by_id[sid]
    exceptions = [_exception(e) for e in span.events if e.name == "exception"]
    detail = error_detail(span)
    travelled = f" — propagated through {len(propagated)} parent span(s)" if propagated else ""
    return Finding(
        "error", Severity.CRITICAL,
        f"{label(span)} failed" + (f": {shorten(detail)}" if detail else "") + f" — root cause{travelled}",
        (sid, *propagated),
        {"status_message": span.status_message, "exceptions": exceptions, "error_logs": _error_logs(ctx, sid),
         "propagated_to": propagated, "depth": ctx.tree.depth[sid]},
        impact_ns=ctx.held.get(sid, 0),
    )


def _retried_ok(ctx: Context, failing: frozenset[str]) -> dict[str, str]:
    """failed span id → the retry that finally succeeded (following retries of retries)."""
    retry_of = {failed: retry for retry, failed in ctx.retries.items()}
    out: dict[str, str] = {}
    for failed in retry_of:
        cursor, hops = retry_of[failed], 0
        while cursor in failing and cursor in retry_of and hops < len(retry_of):
            cursor, hops = retry_of[cursor], hops + 1
        if cursor not in failing:
            out[failed] = cursor
    return out


def _recovered(ctx: Context, spans: list[Span], retried_ok: dict[str, str]) -> Finding:
    """One warning for every recovered failure of one operation."""
    first = spans[0]
    details = list(dict.fromkeys(d for d in (error_detail(sp) for sp in spans) if d))
    retried = [sp.span_id for sp in spans if sp.span_id in retried_ok]
    timeouts = all(is_timeout(sp) for sp in spans)
    what = "timed out" if timeouts else "failed" + (f": {shorten(details[0], 80)}" if details else "")
    count = f"{len(spans)} × " if len(spans) > 1 else ""
    if retried and len(retried) == len(spans):
        how = "each retried successfully" if len(spans) > 1 else "retried successfully"
    elif retried:
        how = f"{len(retried)} retried successfully"
    else:
        how = "the request carried on"
    return Finding(
        "error", Severity.WARNING,
        f"{count}{label(first)} {what} — recovered, {how}",
        tuple(sp.span_id for sp in spans),
        {"recovered": True, "count": len(spans), "messages": details, "timeouts": timeouts,
         "retried_by": {sid: retried_ok[sid] for sid in retried},
         "exceptions": [_exception(e) for sp in spans for e in sp.events if e.name == "exception"][:5],
         "error_logs": [log for sp in spans for log in _error_logs(ctx, sp.span_id)][:10],
         "propagated_to": [], "depth": min(ctx.tree.depth[sp.span_id] for sp in spans)},
        impact_ns=sum(ctx.held.get(sp.span_id, 0) for sp in spans),
    )


def errors(ctx: Context) -> list[Finding]:
    tree = ctx.tree
    failing = ctx.failing
    roots = set(tree.roots)
    superseded = set(ctx.retries.values())  # failed attempts: the last attempt speaks for them
    retried_ok = _retried_ok(ctx, failing)
    causes: list[Finding] = []
    recovered: dict[OperationKey, list[Span]] = defaultdict(list)
    for sid in failing:
        # A failure that was retried successfully explains nothing above it.
        if any(kid in failing and kid not in superseded for kid in tree.children[sid]):
            continue  # the failure came from below: that child (or its own) is the cause
        span = tree.by_id[sid]
        propagated: list[str] = []  # failing ancestors, nearest first: how far the error travelled
        seen, cursor, top = {sid}, span.parent_span_id, sid
        while cursor in failing and cursor not in seen:  # `seen`: parent links may loop
            seen.add(cursor)
            propagated.append(cursor)
            top = cursor
            cursor = tree.by_id[cursor].parent_span_id
        reached = top in roots or any(tree.by_id[s].kind in _ENTRY_KINDS for s in (sid, *propagated))
        if reached and sid not in superseded:
            causes.append(_root_cause(ctx, sid, propagated))
        else:
            recovered[ctx.keys[sid]].append(span)
    causes.sort(key=lambda f: (-f.evidence["depth"], tree.by_id[f.span_ids[0]].start_ns, f.span_ids[0]))
    grouped = [_recovered(ctx, sorted(spans, key=lambda sp: (sp.start_ns, sp.span_id)), retried_ok)
               for spans in recovered.values()]
    grouped.sort(key=lambda f: (tree.by_id[f.span_ids[0]].start_ns, f.span_ids[0]))
    return causes + grouped
