"""Error root cause: the deepest failing span whose children did not fail, with its evidence."""

from __future__ import annotations

from typing import Any

from correlator.analysis.common import Context, is_error, label, shorten
from correlator.model import Finding, Severity, Span, SpanEvent

__all__ = ["errors"]


def _exception(event: SpanEvent) -> dict[str, Any]:
    trace = event.attributes.get("exception.stacktrace")
    first_line = next((ln.strip() for ln in str(trace).splitlines() if ln.strip()), None) if trace else None
    return {"type": event.attributes.get("exception.type"), "message": event.attributes.get("exception.message"),
            "stacktrace": first_line}


def _detail(span: Span, exceptions: list[dict[str, Any]]) -> str | None:
    if span.status_message:
        return span.status_message
    for exc in exceptions:
        if exc["message"] or exc["type"]:
            return ": ".join(str(x) for x in (exc["type"], exc["message"]) if x)
    code = span.attributes.get("http.response.status_code", span.attributes.get("http.status_code"))
    return f"HTTP {code}" if code is not None else None


def errors(ctx: Context) -> list[Finding]:
    tree = ctx.tree
    failing = {sid for sid, span in tree.by_id.items() if is_error(span)}
    out = []
    for sid in failing:
        if any(kid in failing for kid in tree.children[sid]):
            continue  # the failure came from below: that child (or its own) is the cause
        span = tree.by_id[sid]
        exceptions = [_exception(e) for e in span.events if e.name == "exception"]
        propagated: list[str] = []  # failing ancestors, nearest first: how far the error travelled
        seen, cursor = {sid}, span.parent_span_id
        while cursor in failing and cursor not in seen:  # `seen`: parent links may loop
            seen.add(cursor)
            propagated.append(cursor)
            cursor = tree.by_id[cursor].parent_span_id
        logs = [{"id": ln.id, "timestamp_ns": ln.timestamp_ns, "level": ln.level, "line": ln.line}
                for ln in ctx.error_logs.get(sid, ())]
        detail = _detail(span, exceptions)
        travelled = f" — propagated through {len(propagated)} parent span(s)" if propagated else ""
        out.append(Finding(
            "error", Severity.CRITICAL,
            f"{label(span)} failed" + (f": {shorten(detail)}" if detail else "") + f" — root cause{travelled}",
            (sid, *propagated),
            {"status_message": span.status_message, "exceptions": exceptions, "error_logs": logs,
             "propagated_to": propagated, "depth": tree.depth[sid]},
            impact_ns=ctx.held.get(sid, 0),
        ))
    out.sort(key=lambda f: (-f.evidence["depth"], tree.by_id[f.span_ids[0]].start_ns, f.span_ids[0]))
    return out
