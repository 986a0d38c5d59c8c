"""Pure: the seed tutorial's tree, drawn from a real trace.

    Request: GET /api/courses
    ├── api-gateway: GET /api/courses (145ms)
    │   ├── auth-service: validate token (15ms)
    │   └── course-service: GET /courses (120ms)
    │       ├── course-service: SELECT courses (80ms) ← Bottleneck!
    │       └── course-service: cache lookup (5ms)
    └── Response (total: 145ms)

N+1 groups collapse into one line (`× 12 SELECT … (61ms)`), errors are marked, and each span
shows how many log lines and exemplars the join attached to it. Iterative, so a trace 5,000
spans deep draws like a shallow one.
"""

from __future__ import annotations

from collections.abc import Mapping

from correlator.analysis import Analysis, fmt_ms, is_error
from correlator.spantree import SpanTree

__all__ = ["render_tree"]


def _counts(sid: str, logs: Mapping[str, int], exemplars: Mapping[str, int]) -> str:
    parts = []
    if logs.get(sid):
        parts.append(f"{logs[sid]} log{'s' if logs[sid] != 1 else ''}")
    if exemplars.get(sid):
        parts.append(f"{exemplars[sid]} exemplar{'s' if exemplars[sid] != 1 else ''}")
    return f" [{', '.join(parts)}]" if parts else ""


def render_tree(tree: SpanTree, analysis: Analysis, log_counts: Mapping[str, int] | None = None,
                exemplar_counts: Mapping[str, int] | None = None, title: str | None = None,
                max_lines: int = 2000) -> str:
    logs, exemplars = log_counts or {}, exemplar_counts or {}
    bottleneck = {f.span_ids[0] for f in analysis.findings if f.kind == "bottleneck"}
    # N+1 members collapse into their group's first span; the rest are skipped.
    group_of: dict[str, tuple[str, int, int, str]] = {}
    for f in analysis.findings:
        if f.kind == "n_plus_one":
            head = f.span_ids[0]
            what = f.evidence.get("statement") or f.evidence.get("operation") or "calls"
            for sid in f.span_ids:
                group_of[sid] = (head, len(f.span_ids), int(float(f.evidence["total_ms"]) * 1_000_000), str(what))
    lines = [title or f"Request: {tree.by_id[tree.roots[0]].operation}" if tree.roots else "Request: (empty trace)"]
    # Stack of (span id, prefix for its children, is last sibling).
    stack: list[tuple[str, str, bool]] = [(r, "", i == len(tree.roots) - 1 and False) for i, r in reversed(list(enumerate(tree.roots)))]
    shown = 0
    truncated = 0
    while stack:
        sid, prefix, last = stack.pop()
        if shown >= max_lines:
            truncated += 1
            stack.extend((c, "", True) for c in tree.children.get(sid, ()))
            continue
        span = tree.by_id[sid]
        branch = "└── " if last else "├── "
        group = group_of.get(sid)
        if group is not None and group[0] == sid:
            _head, count, total_ns, what = group
            lines.append(f"{prefix}{branch}× {count} {what} ({fmt_ms(total_ns)}) ← N+1")
            shown += 1
            continue
        marks = ""
        if sid in bottleneck:
            marks += " ← Bottleneck!"
        if is_error(span):
            marks += " ✗ error" + (f": {span.status_message}" if span.status_message else "")
        lines.append(f"{prefix}{branch}{span.service}: {span.operation} ({fmt_ms(span.duration_ns)})"
                     f"{_counts(sid, logs, exemplars)}{marks}")
        shown += 1
        kids = [c for c in tree.children.get(sid, ()) if c not in group_of or group_of[c][0] == c]
        child_prefix = prefix + ("    " if last else "│   ")
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], child_prefix, i == len(kids) - 1))
    if truncated:
        lines.append(f"… {truncated} more spans (use --json for all)")
    total = tree.end_ns - tree.start_ns
    lines.append(f"└── Response (total: {fmt_ms(total)})")
    return "\n".join(lines)
