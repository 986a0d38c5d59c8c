"""An investigation → the JSON body of `GET /investigate` and its text (`?format=text`, the CLI).

The sentences are built here once, into the JSON (`message` of each suspect and change), so
the API, the CLI and any page say exactly the same thing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from correlator.config import Settings
from correlator.investigate import Change, Comparison, LogPattern, OperationKey, Suspect, operation_label
from correlator.investigate_run import Investigation, Request, TraceResult
from correlator.timeparams import rfc3339_ns

__all__ = ["empty_body", "fmt_duration", "fmt_value", "investigate_link", "investigation_body", "investigation_text"]

NO_EXEMPLARS = "no exemplars in that window"


def fmt_duration(ns: int | float) -> str:
    """`1.9 s`, `80 ms`, `0.4 ms`."""
    ms = ns / 1_000_000
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


def fmt_value(value: float, metric: str) -> str:
    """An exemplar's value in its metric's unit (read from the name, as Prometheus names carry it)."""
    if "_milliseconds" in metric:
        return fmt_duration(value * 1_000_000)
    if "_seconds" in metric:
        return fmt_duration(value * 1_000_000_000)
    return f"{value:g}"


def investigate_link(settings: Settings, query: str, start_ns: int, end_ns: int) -> str:
    params = urlencode({"query": query, "start": str(start_ns), "end": str(end_ns)})
    return f"{settings.server.public_url.rstrip('/')}/investigate?{params}"


def _correlate_link(settings: Settings, result: TraceResult) -> str:
    ts = result.candidate.timestamp_ns
    return f"{settings.server.public_url.rstrip('/')}/correlate/{result.candidate.trace_id}?start={ts}&end={ts}"


def _operation(key: OperationKey) -> dict[str, str]:
    return {"service": key[0], "operation": key[1], "target": key[2]}


def _of(n: int, total: int, group: str) -> str:
    return f"{n} of {total} {group} traces"


def suspect_message(s: Suspect) -> str:
    what = operation_label(s.operation)
    seen = _of(len(s.slow_traces), s.slow_total, "slow")
    share = f"{s.median_share:.0%} of the critical path"
    if s.kind == "bottleneck":
        text = f"{what} is the bottleneck in {seen} (median {fmt_duration(s.median_measure_ns)}, {share})"
    elif s.kind == "n_plus_one":
        shape = f": {s.detail}" if s.detail and s.detail != s.operation[2] else ""  # unless the label says it
        text = (f"N+1 on {what} in {seen} (median {s.median_count} calls, {fmt_duration(s.median_measure_ns)} in all)"
                f"{shape}")
    elif s.kind == "error":
        text = f"{what} fails in {seen}: {s.detail}"
    elif s.kind == "gap":
        where = f"on the wire or in a queue on {s.detail}" if s.detail else f"inside {what} covered by no child span"
        text = f"time {where} in {seen} (median {fmt_duration(s.median_measure_ns)}, {share})"
    else:
        text = f"{what} is unusually long in {seen} (median {fmt_duration(s.median_measure_ns)}, {share})"
    if s.normal_total:
        text += f"; in {_of(len(s.normal_traces), s.normal_total, 'baseline')}"
    return text


def change_message(c: Change) -> str:
    what = operation_label(c.operation)
    if c.normal_median_ns is None:
        return f"{what}: only in slow requests ({c.slow_traces} slow traces, median {fmt_duration(c.slow_median_ns or 0)})"
    return (f"{what}: {fmt_duration(c.normal_median_ns)} typical → {fmt_duration(c.slow_median_ns or 0)} in slow requests "
            f"({c.slow_traces} slow, {c.normal_traces} baseline traces)")


def comparison_summary(c: Comparison) -> str:
    if not c.enough:
        return (f"too few traces to compare: {c.slow_count} slow and {c.normal_count} baseline "
                f"(need at least 3 on each side; widen the window or raise the limit)")
    parts = [change_message(x) for x in c.changed[:3]] + [change_message(x) for x in c.only_in_slow[:3]]
    if not parts:
        return f"no operation differs between {c.slow_count} slow and {c.normal_count} baseline traces"
    rest = f"; everything else unchanged ({c.unchanged} operations)" if c.unchanged else ""
    return "; ".join(parts) + rest


def log_message(p: LogPattern) -> str:
    where = f"{p.service} [{p.level}]" if p.level else p.service
    text = f"{where} \"{p.message}\" in {_of(len(p.slow_traces), p.slow_total, 'slow')}"
    if p.normal_total:
        text += f", {_of(len(p.normal_traces), p.normal_total, 'baseline')}"
    return text


def _trace(settings: Settings, r: TraceResult) -> dict[str, Any]:
    c = r.candidate
    out: dict[str, Any] = {
        "trace_id": c.trace_id, "group": "slow" if r.slow else "baseline", "value": c.value,
        "value_text": fmt_value(c.value, c.metric), "metric": c.metric, "series": dict(c.series),
        "timestamp": rfc3339_ns(c.timestamp_ns), "correlate": _correlate_link(settings, r),
        "status": "ok" if r.failure is None else "failed", "why": r.failure, "cached": False,
        "duration_ms": None, "root": None, "top_finding": None, "sources": {},
    }
    if r.outcome is not None:
        corr = r.outcome.correlation
        out["cached"] = r.outcome.cached
        out["sources"] = {name: {"status": rep.status.value, "items": rep.items, "truncated": rep.truncated,
                                 "error": rep.error} for name, rep in corr.sources.items()}
        if corr.trace is not None and corr.trace.spans:
            root = min(corr.trace.spans, key=lambda sp: (sp.parent_span_id is not None, sp.start_ns))
            out["duration_ms"] = round((corr.trace.end_ns - corr.trace.start_ns) / 1_000_000, 3)
            out["root"] = f"{root.service}: {root.operation}"
        elif r.reading is not None:  # a big trace, read in the worker process
            out["duration_ms"], out["root"] = r.reading.duration_ms, r.reading.root
        if corr.findings:
            out["top_finding"] = corr.findings[0].message
    return out


def investigation_body(inv: Investigation, settings: Settings) -> dict[str, Any]:
    links = {r.candidate.trace_id: _correlate_link(settings, r) for r in inv.traces}

    def evidence(ids: tuple[str, ...]) -> list[dict[str, str]]:
        return [{"trace_id": t, "correlate": links[t]} for t in ids if t in links]

    request = inv.request
    c = inv.comparison
    read = [r for r in inv.traces if r.failure is None]
    return {
        "query": request.query,
        "window": {"start": rfc3339_ns(request.window.start_ns), "end": rfc3339_ns(request.window.end_ns)},
        "summary": {
            "exemplars": inv.exemplar_count,
            "traces_found": len(inv.split.slow) + len(inv.split.normal),
            "slow_found": len(inv.split.slow), "normal_found": len(inv.split.normal),
            "correlated": len(read), "failed": len(inv.traces) - len(read), "left_out": inv.selection.left_out,
            "slow_threshold": inv.split.threshold, "slow_rule": inv.split.rule, "ms": inv.ms,
            "message": _headline(inv),
        },
        "suspects": [{
            "kind": s.kind, **_operation(s.operation), "detail": s.detail or None, "message": suspect_message(s),
            "slow_traces": len(s.slow_traces), "slow_total": s.slow_total,
            "baseline_traces": len(s.normal_traces), "baseline_total": s.normal_total,
            "explained_ms": round(s.explained_ns / 1_000_000, 3), "median_ms": round(s.median_measure_ns / 1_000_000, 3),
            "median_share": round(s.median_share, 4), "median_count": s.median_count,
            "evidence": evidence(s.slow_traces), "baseline_evidence": evidence(s.normal_traces),
        } for s in inv.suspects],
        "comparison": {
            "slow_traces": c.slow_count, "baseline_traces": c.normal_count, "enough": c.enough,
            "message": comparison_summary(c),
            "changed": [_change(x) for x in c.changed], "only_in_slow": [_change(x) for x in c.only_in_slow],
            "unchanged": c.unchanged,
        },
        "logs": [{"service": p.service, "level": p.level or None, "message": p.message, "text": log_message(p),
                  "slow_traces": len(p.slow_traces), "slow_total": p.slow_total,
                  "baseline_traces": len(p.normal_traces), "baseline_total": p.normal_total,
                  "evidence": evidence(p.slow_traces)} for p in inv.logs],
        "traces": [_trace(settings, r) for r in inv.traces],
        "failed": [{"trace_id": r.candidate.trace_id, "why": r.failure, "correlate": links[r.candidate.trace_id]}
                   for r in inv.traces if r.failure is not None],
    }


def _change(c: Change) -> dict[str, Any]:
    return {**_operation(c.operation), "message": change_message(c),
            "slow_median_ms": None if c.slow_median_ns is None else round(c.slow_median_ns / 1_000_000, 3),
            "baseline_median_ms": None if c.normal_median_ns is None else round(c.normal_median_ns / 1_000_000, 3),
            "slow_traces": c.slow_traces, "baseline_traces": c.normal_traces}


def _headline(inv: Investigation) -> str:
    if not inv.traces:
        return NO_EXEMPLARS
    if not inv.selection.slow:
        return f"no trace is slow by {inv.split.rule} (slow from {inv.split.threshold:g}): nothing slow to explain"
    if inv.suspects:
        return suspect_message(inv.suspects[0])
    read = sum(1 for r in inv.traces if r.failure is None)
    if not read:
        return f"none of the {len(inv.traces)} traces could be read (see `failed`)"
    return f"no finding stands out across {read} traces"


def empty_body(request: Request, exemplar_count: int) -> dict[str, Any]:
    """200: nothing to investigate, and what to try instead of a bare empty list."""
    return {
        "query": request.query,
        "window": {"start": rfc3339_ns(request.window.start_ns), "end": rfc3339_ns(request.window.end_ns)},
        "summary": {"exemplars": exemplar_count, "traces_found": 0, "correlated": 0, "failed": 0, "message": NO_EXEMPLARS},
        "try": [
            "widen the window (start/end): exemplars exist only where requests were traced and scraped",
            "select the histogram's _bucket series (e.g. http_server_duration_seconds_bucket{…}): exemplars sit on buckets",
            "check that Prometheus runs with --enable-feature=exemplar-storage and scrapes in OpenMetrics",
            "check that the exemplars carry a trace ID label (trace_id, traceID or trace.id)",
        ],
        "suspects": [], "comparison": None, "logs": [], "traces": [], "failed": [],
    }


def investigation_text(body: dict[str, Any]) -> str:
    out = [f"Investigation of {body['query']}", f"{body['window']['start']} → {body['window']['end']}", ""]
    summary = body["summary"]
    out.append(summary["message"])
    if "try" in body:
        out += ["", "Try:"] + [f"  - {tip}" for tip in body["try"]]
        return "\n".join(out) + "\n"
    out.append(f"{summary['traces_found']} traces from {summary['exemplars']} exemplars; slow: {summary['slow_rule']}; "
               f"{summary['correlated']} read, {summary['failed']} failed, {summary['left_out']} left out, {summary['ms']} ms")
    if body["suspects"]:
        out += ["", "Suspects (by the time they explain):"]
        for i, s in enumerate(body["suspects"][:10], 1):
            ids = ", ".join(e["trace_id"] for e in s["evidence"][:3]) + (" …" if len(s["evidence"]) > 3 else "")
            out.append(f"  {i}. {s['message']}")
            out.append(f"     evidence: {ids}")
    out += ["", "Slow vs baseline:", f"  {body['comparison']['message']}"]
    if body["logs"]:
        out += ["", "Log messages in most slow traces:"] + [f"  {p['text']}" for p in body["logs"][:10]]
    out += ["", "Traces:"]
    for t in body["traces"]:
        state = "ok" if t["status"] == "ok" else f"FAILED: {t['why']}"
        out.append(f"  [{t['group']}] {t['trace_id']} {t['value_text']} {state}" +
                   (f" — {t['top_finding']}" if t["top_finding"] else ""))
    return "\n".join(out) + "\n"
