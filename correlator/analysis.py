"""Pure: read a trace the way the seed tutorial teaches, deterministically.

Critical path first (Jaeger UI's algorithm, made iterative and robust to overlapping,
async and overflowing children), then a tuple of small detectors, each
`(ctx) -> list[Finding]`: bottleneck, long span, N+1, gap (incl. client→server hop
latency), error root cause, fan-out, malformed input. Findings are sorted by impact: the
time on the critical path they explain.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from correlator.config import AnalysisSettings
from correlator.model import Finding, LogLine, Severity, Span
from correlator.spantree import SpanTree, covered_ns

__all__ = ["Analysis", "analyse", "critical_path", "normalise_statement"]

MS = 1_000_000
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Analysis:
    critical_path: tuple[str, ...]  # span ids, root first, in the order the path visits them
    findings: tuple[Finding, ...]
    critical_ns: Mapping[str, int] = field(default_factory=dict)  # time each span holds the path


def fmt_ms(ns: int | float) -> str:
    ms = ns / MS
    return f"{ms:.1f}ms" if abs(ms) < 10 else f"{ms:.0f}ms"


def _label(span: Span) -> str:
    return f"{span.service}: {span.operation}"


# ------------------------------------------------------------------------------ critical path


def _effective_bounds(tree: SpanTree) -> dict[str, tuple[int, int]]:
    """Each span clipped to its parent, top-down: a child that outlives its parent (async work,
    clock skew) cannot hold the parent's end, exactly as Jaeger's UI sanitises before its walk."""
    bounds: dict[str, tuple[int, int]] = {}
    for sid in tree.order:  # pre-order: parents first
        span = tree.by_id[sid]
        parent = span.parent_span_id
        if parent is not None and parent in bounds and sid not in tree.roots:
            lo, hi = bounds[parent]
            start, end = min(max(span.start_ns, lo), hi), max(min(span.end_ns, hi), lo)
        else:
            start, end = span.start_ns, span.end_ns
        bounds[sid] = (start, max(start, end))
    return bounds


def critical_path(tree: SpanTree) -> tuple[tuple[str, ...], dict[str, int]]:
    """Walk back from the root's end through the last-finishing child that ended before the cursor.

    Returns the spans in path order (root first) and the ns each one holds the path. Each child
    is taken at most once, so the walk ends on any input, and the sections never overlap.
    """
    if not tree.roots:
        return (), {}
    bounds = _effective_bounds(tree)
    true_roots = [r for r in tree.roots if tree.by_id[r].parent_span_id is None] or tree.roots
    root = max(true_roots, key=lambda r: (bounds[r][1] - bounds[r][0], -bounds[r][0]))
    by_end = {sid: sorted((c for c in kids if bounds[c][1] > bounds[c][0] or not tree.children[c]),
                          key=lambda c: (-bounds[c][1], -bounds[c][0]))
              for sid, kids in tree.children.items() if kids}
    next_child: dict[str, int] = defaultdict(int)
    held: dict[str, int] = {}
    current, cursor = root, bounds[root][1]
    while True:
        held.setdefault(current, 0)  # on the path even when its own section is empty
        start, _end = bounds[current]
        kids = by_end.get(current, [])
        i = next_child[current]
        while i < len(kids) and bounds[kids[i]][1] > cursor:
            i += 1
        child = kids[i] if i < len(kids) and bounds[kids[i]][1] > start else None
        next_child[current] = i + 1
        if child is not None:
            child_end = bounds[child][1]
            held[current] += max(0, cursor - child_end)
            current, cursor = child, child_end
            continue
        held[current] += max(0, cursor - start)
        if current == root:
            break
        parent = tree.by_id[current].parent_span_id
        if parent is None or parent not in bounds:  # pragma: no cover - roots break above
            break
        current, cursor = parent, bounds[current][0]
    # Chronological, parents before children that start with them: the root comes first.
    order = sorted(held, key=lambda sid: (bounds[sid][0], tree.depth[sid]))
    return tuple(order), dict(held)


# ------------------------------------------------------------------------------ detectors


@dataclass(frozen=True, slots=True)
class Context:
    tree: SpanTree
    settings: AnalysisSettings
    path: tuple[str, ...]
    held: Mapping[str, int]
    total_ns: int
    error_logs: Mapping[str, Sequence[LogLine]]
    n_plus_one: list[tuple[str, list[Span], str | None]]  # computed once, used by two detectors


def _bottleneck(ctx: Context) -> list[Finding]:
    if not ctx.path or ctx.total_ns <= 0:
        return []
    sid = max(ctx.path, key=lambda s: (ctx.tree.self_ns[s], ctx.held.get(s, 0)))
    self_ns = ctx.tree.self_ns[sid]
    share = self_ns / ctx.total_ns
    if share < ctx.settings.bottleneck_share:
        return []
    span = ctx.tree.by_id[sid]
    return [Finding(
        "bottleneck", Severity.CRITICAL if share >= 0.6 else Severity.WARNING,
        f"{_label(span)} ({fmt_ms(span.duration_ns)}) spends {fmt_ms(self_ns)} of its own — "
        f"{share:.0%} of the trace — the bottleneck",
        (sid,), {"self_ms": self_ns / MS, "duration_ms": span.duration_ns / MS, "share": round(share, 4),
                 "trace_ms": ctx.total_ns / MS},
        impact_ns=self_ns,
    )]


def _long_spans(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    groups: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in tree.by_id.values():
        groups[(span.service, span.operation)].append(span)
    out: list[Finding] = []
    absolute_ns = s.long_span_absolute_ms * MS
    for (service, operation), spans in groups.items():
        median = statistics.median(sp.duration_ns for sp in spans) if len(spans) >= 3 else None
        for span in spans:
            relative = median is not None and median > 0 and span.duration_ns > s.long_span_factor * median
            own = tree.self_ns[span.span_id]
            absolute = own >= absolute_ns
            if not (relative or absolute):
                continue
            reason = (f"{span.duration_ns / median:.1f}× the median {fmt_ms(median)} of its {len(spans)} siblings-in-kind"
                      if relative and median else f"its own time {fmt_ms(own)} is above {fmt_ms(absolute_ns)}")
            evidence: dict[str, object] = {"duration_ms": span.duration_ns / MS, "self_ms": own / MS}
            if median is not None:
                evidence.update(median_ms=median / MS, samples=len(spans))
            out.append(Finding("long_span", Severity.WARNING, f"{service}: {operation} took {fmt_ms(span.duration_ns)} — {reason}",
                               (span.span_id,), evidence, impact_ns=ctx.held.get(span.span_id, 0)))
    return out


_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![\w$])-?\d+(?:\.\d+)?(?![\w])")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_SPACE = re.compile(r"\s+")


def normalise_statement(statement: str) -> str:
    """Literals stripped so `WHERE id = 7` and `WHERE id = 8` are one query shape."""
    shape = _STRING.sub("?", statement)
    shape = _NUMBER.sub("?", shape)
    shape = _IN_LIST.sub("(?)", shape)
    return _SPACE.sub(" ", shape).strip()


def _shape(span: Span) -> str | None:
    for key in ("db.query.text", "db.statement"):
        value = span.attributes.get(key)
        if isinstance(value, str) and value:
            return normalise_statement(value)
    for key in ("url.template", "http.route"):
        value = span.attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _sequential_share(spans: Sequence[Span]) -> float:
    ordered = sorted(spans, key=lambda sp: sp.start_ns)
    pairs = list(zip(ordered, ordered[1:]))
    if not pairs:
        return 0.0
    return sum(1 for a, b in pairs if b.start_ns >= a.end_ns) / len(pairs)


def _n_plus_one_groups(tree: SpanTree, settings: AnalysisSettings) -> list[tuple[str, list[Span], str | None]]:
    groups = []
    for parent, kids in tree.children.items():
        if len(kids) < settings.n_plus_one_min_count:
            continue
        by_key: dict[tuple[str, str, str | None], list[Span]] = defaultdict(list)
        for kid in kids:
            span = tree.by_id[kid]
            by_key[(span.service, span.operation, _shape(span))].append(span)
        for (_svc, _op, shape), spans in by_key.items():
            if len(spans) >= settings.n_plus_one_min_count and \
                    _sequential_share(spans) >= settings.n_plus_one_sequential_share:
                groups.append((parent, spans, shape))
    return groups


def _n_plus_one(ctx: Context) -> list[Finding]:
    out = []
    for parent, spans, shape in ctx.n_plus_one:
        total = sum(sp.duration_ns for sp in spans)
        saved = total - max(sp.duration_ns for sp in spans)
        what = shape or spans[0].operation
        out.append(Finding(
            "n_plus_one", Severity.WARNING,
            f"{len(spans)} × {what} ({fmt_ms(total)}) under {_label(ctx.tree.by_id[parent])} — N+1; "
            f"batching would save ~{fmt_ms(saved)}",
            tuple(sp.span_id for sp in spans),
            {"count": len(spans), "total_ms": total / MS, "saved_ms": saved / MS, "statement": shape,
             "service": spans[0].service, "operation": spans[0].operation, "parent_span_id": parent,
             "sequential_share": round(_sequential_share(spans), 3)},
            impact_ns=sum(ctx.held.get(sp.span_id, 0) for sp in spans) or saved,
        ))
    return out


def _gaps(ctx: Context) -> list[Finding]:
    s, tree, out = ctx.settings, ctx.tree, []
    for parent, kids in tree.children.items():
        if not kids:
            continue
        span = tree.by_id[parent]
        if span.duration_ns <= 0:
            continue
        intervals = sorted((tree.by_id[k].start_ns, tree.by_id[k].end_ns, k) for k in kids)
        cursor, before, best = span.start_ns, None, (0, span.start_ns, None, None)
        for start, end, kid in intervals:
            if start > cursor and start - cursor > best[0]:
                best = (start - cursor, cursor, before, kid)
            if end > cursor:
                cursor, before = end, kid
        if span.end_ns > cursor and span.end_ns - cursor > best[0]:
            best = (span.end_ns - cursor, cursor, before, None)
        gap, at, after_kid, before_kid = best
        if gap >= s.gap_min_ms * MS and gap >= s.gap_min_share * span.duration_ns:
            out.append(Finding(
                "gap", Severity.WARNING,
                f"{fmt_ms(gap)} inside {_label(span)} covered by no child span "
                f"({gap / span.duration_ns:.0%} of it) — uninstrumented work or waiting",
                (parent,), {"gap_ms": gap / MS, "offset_ms": (at - span.start_ns) / MS, "after_span_id": after_kid,
                            "before_span_id": before_kid, "parent_ms": span.duration_ns / MS},
                impact_ns=gap if parent in ctx.held else 0,
            ))
    # Client → server hops across services: network / queue time no peer computes.
    for sid, span in tree.by_id.items():
        if span.kind != "client":
            continue
        for kid in tree.children.get(sid, ()):
            server = tree.by_id[kid]
            if server.kind != "server" or server.service == span.service:
                continue
            request_ns, response_ns = server.start_ns - span.start_ns, span.end_ns - server.end_ns
            skew = request_ns < 0 or response_ns < 0
            if skew or request_ns + response_ns >= s.gap_min_ms * MS:
                hop = f"{span.service} → {server.service}"
                message = (f"clock skew between {hop}: the server span lies outside its client span" if skew else
                           f"{fmt_ms(request_ns + response_ns)} on the wire or in a queue on {hop} "
                           f"(request {fmt_ms(request_ns)}, response {fmt_ms(response_ns)})")
                out.append(Finding(
                    "gap", Severity.INFO if skew else Severity.WARNING, message, (sid, kid),
                    {"hop": hop, "request_ms": request_ns / MS, "response_ms": response_ns / MS, "clock_skew": skew},
                    impact_ns=0 if skew else min(request_ns + response_ns, ctx.held.get(sid, 0)),
                ))
    return out


def is_error(span: Span) -> bool:
    if span.status == "error" or span.attributes.get("error") in (True, "true"):
        return True
    for key in ("http.response.status_code", "http.status_code"):
        code = span.attributes.get(key)
        try:
            if code is not None and int(code) >= 500:
                return True
        except (TypeError, ValueError):
            continue
    return False


def _errors(ctx: Context) -> list[Finding]:
    tree = ctx.tree
    erroring = {sid for sid, span in tree.by_id.items() if is_error(span)}
    out = []
    for sid in erroring:
        if any(kid in erroring for kid in tree.children.get(sid, ())):
            continue  # not the root cause: the error came from below
        span = tree.by_id[sid]
        exceptions = [
            {"type": e.attributes.get("exception.type"), "message": e.attributes.get("exception.message"),
             "stacktrace": str(e.attributes.get("exception.stacktrace", "")).strip().splitlines()[:1] or None}
            for e in span.events if e.name == "exception"
        ]
        chain, cursor = [], span.parent_span_id
        while cursor is not None and cursor in erroring and cursor not in chain:
            chain.append(cursor)
            cursor = tree.by_id[cursor].parent_span_id
        logs = [{"timestamp_ns": line.timestamp_ns, "level": line.level, "line": line.line}
                for line in ctx.error_logs.get(sid, ())]
        detail = span.status_message or next((str(x["message"]) for x in exceptions if x["message"]), None)
        out.append(Finding(
            "error", Severity.CRITICAL,
            f"{_label(span)} failed" + (f": {detail}" if detail else "") +
            (f" — propagated through {len(chain)} parent span(s)" if chain else " — root cause"),
            (sid, *chain),
            {"status_message": span.status_message, "exceptions": exceptions, "error_logs": logs,
             "propagated_to": chain, "depth": tree.depth[sid]},
            impact_ns=ctx.held.get(sid, 0),
        ))
    out.sort(key=lambda f: -f.evidence["depth"])  # type: ignore[operator]
    return out


_MAX_FAN_OUT_FINDINGS = 10  # info only: the few that save the most time are what a person reads


def _fan_out(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    n_plus_one = {sp.span_id for _p, spans, _s in ctx.n_plus_one for sp in spans}
    parallel: list[tuple[int, str, int, int, int]] = []  # (saved, parent, children, sum, wall)
    sequential: list[tuple[int, str, list[Span], int]] = []
    for parent, kids in tree.children.items():
        if len(kids) < s.fan_out_min_children:
            continue
        spans = [tree.by_id[k] for k in kids]
        lo, hi = min(sp.start_ns for sp in spans), max(sp.end_ns for sp in spans)
        union = covered_ns([(sp.start_ns, sp.end_ns) for sp in spans], lo, hi)
        total = sum(sp.end_ns - sp.start_ns for sp in spans)
        if union > 0 and total >= 1.5 * union:
            parallel.append((total - union, parent, len(spans), total, union))
            continue
        calls = [sp for sp in spans if sp.span_id not in n_plus_one and (sp.kind == "client" or sp.service != tree.by_id[parent].service)]
        services = {sp.service if sp.kind != "client" else sp.attributes.get("peer.service", sp.operation) for sp in calls}
        if len(calls) >= 2 and len(services) >= 2 and _sequential_share(calls) == 1.0:
            total_calls = sum(sp.duration_ns for sp in calls)
            saved = total_calls - max(sp.duration_ns for sp in calls)
            if saved >= s.gap_min_ms * MS:
                sequential.append((saved, parent, calls, total_calls))
    out = []
    parallel.sort(key=lambda c: (-c[0], c[1]))
    for saved, parent, children, total, union in parallel[:_MAX_FAN_OUT_FINDINGS]:
        out.append(Finding(
            "fan_out", Severity.INFO,
            f"{_label(tree.by_id[parent])} runs {children} calls in parallel (parallelism {total / union:.1f}×) — good",
            (parent, *tree.children[parent]), {"children": children, "parallelism": round(total / union, 2),
                                               "sum_ms": total / MS, "wall_ms": union / MS, "parallel_parents": len(parallel)},
        ))
    sequential.sort(key=lambda c: (-c[0], c[1]))
    for saved, parent, calls, total_calls in sequential[:_MAX_FAN_OUT_FINDINGS]:
        out.append(Finding(
            "fan_out", Severity.INFO,
            f"{_label(tree.by_id[parent])} calls {len(calls)} services one after another ({fmt_ms(total_calls)}); "
            f"if independent, running them in parallel could save ~{fmt_ms(saved)}",
            (parent, *(sp.span_id for sp in calls)),
            {"sequential_calls": len(calls), "sum_ms": total_calls / MS, "saved_ms": saved / MS},
        ))
    return out


def _malformed(ctx: Context) -> list[Finding]:
    return [Finding("malformed", Severity.WARNING, problem, (), {"problem": problem}) for problem in ctx.tree.problems]


DETECTORS: tuple[Callable[[Context], list[Finding]], ...] = (
    _bottleneck, _long_spans, _n_plus_one, _gaps, _errors, _fan_out, _malformed,
)


def analyse(tree: SpanTree, settings: AnalysisSettings,
            error_logs: Mapping[str, Sequence[LogLine]] | None = None) -> Analysis:
    if not tree.by_id:
        return Analysis((), ())
    path, held = critical_path(tree)
    total = tree.end_ns - tree.start_ns
    ctx = Context(tree, settings, path, held, total, error_logs or {}, _n_plus_one_groups(tree, settings))
    findings = [f for detector in DETECTORS for f in detector(ctx)]
    findings.sort(key=lambda f: (-f.impact_ns, _SEVERITY_RANK[f.severity], f.kind))
    return Analysis(path, tuple(findings), held)
