"""Pure: the seed tutorial's tree, drawn from a real trace.

    Request: GET /api/courses
    ├── api-gateway: GET /api/courses (145ms)
    │   ├── auth-service: validate token (15ms)
    │   └── course-service: GET /courses (120ms)
    │       ├── course-service: SELECT courses (80ms) ← Bottleneck!
    │       └── course-service: cache lookup (5.0ms)
    └── Response (total: 145ms)

N+1 loops collapse into one line (`× 12 SELECT … (61ms)`), errors are marked, and each span
shows how many log lines and exemplars the join attached to it. Iterative, with the indent
capped, so a trace 5,000 spans deep draws like a shallow one.
"""

from __future__ import annotations

from collections.abc import Mapping

from correlator.analysis import Analysis, fmt_ms, is_error
from correlator.analysis.common import shorten
from correlator.spantree import SpanTree

__all__ = ["render_tree"]

_MAX_INDENT = 40  # levels drawn as bars; deeper lines keep this indent and say their depth


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counts(ids: tuple[str, ...], logs: Mapping[str, int], exemplars: Mapping[str, int]) -> str:
    n_logs, n_exemplars = sum(logs.get(i, 0) for i in ids), sum(exemplars.get(i, 0) for i in ids)
    parts = ([_plural(n_logs, "log")] if n_logs else []) + ([_plural(n_exemplars, "exemplar")] if n_exemplars else [])
    return f" [{', '.join(parts)}]" if parts else ""


def _loops(tree: SpanTree, analysis: Analysis) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, ...], str]]:
    """Each N+1 member → all members of its loop, and each loop → what it repeats."""
    group_of: dict[str, tuple[str, ...]] = {}
    what: dict[tuple[str, ...], str] = {}
    for finding in analysis.findings:
        if finding.kind == "n_plus_one":
            members = tuple(sid for sid in finding.span_ids if sid in tree.by_id and sid not in group_of)
            if members:
                group_of.update(dict.fromkeys(members, members))
                what[members] = str(finding.evidence.get("statement") or tree.by_id[members[0]].operation)
    return group_of, what


def _loop_line(tree: SpanTree, members: tuple[str, ...], what: str) -> str:
    total = sum(tree.by_id[sid].duration_ns for sid in members)
    return f"× {len(members)} {shorten(what, 80)} ({fmt_ms(total)})"


def _span_line(tree: SpanTree, sid: str, bottlenecks: set[str]) -> tuple[str, str]:
    span = tree.by_id[sid]
    marks = " ← Bottleneck!" if sid in bottlenecks else ""
    if is_error(span):
        marks += " ✗ error" + (f": {shorten(span.status_message, 80)}" if span.status_message else "")
    return f"{span.service}: {span.operation} ({fmt_ms(span.duration_ns)})", marks


def render_tree(tree: SpanTree, analysis: Analysis, log_counts: Mapping[str, int] | None = None,
                exemplar_counts: Mapping[str, int] | None = None, title: str | None = None,
                max_lines: int = 2000) -> str:
    logs, exemplars = log_counts or {}, exemplar_counts or {}
    if title is None:
        title = f"Request: {tree.by_id[tree.roots[0]].operation}" if tree.roots else "Request: (empty trace)"
    lines = [title]
    bottlenecks = {f.span_ids[0] for f in analysis.findings if f.kind == "bottleneck" and f.span_ids}
    group_of, loop_what = _loops(tree, analysis)
    drawn_loops: set[tuple[str, ...]] = set()
    hidden = 0  # span lines past `max_lines`

    def visible(kids: list[str]) -> list[str]:
        """Children to draw: a loop's members stand in its first member's place."""
        out, seen = [], set()
        for kid in kids:
            members = group_of.get(kid)
            if members is None:
                out.append(kid)
            elif members not in seen:
                seen.add(members)
                out.append(kid)
        return out

    # Every root draws with "├──": the closing "└── Response" line ends the tree, as in the seed.
    stack: list[tuple[str, str, bool, int]] = [(r, "", False, 0) for r in reversed(visible(tree.roots))]
    while stack:
        sid, prefix, last, depth = stack.pop()
        members = group_of.get(sid)
        if members is not None and members not in drawn_loops:
            drawn_loops.add(members)
            if len(lines) - 1 >= max_lines:
                hidden += len(members)
            else:
                branch = "└── " if last else "├── "
                failed = sum(1 for m in members if is_error(tree.by_id[m]))
                lines.append(f"{prefix}{branch}{_loop_line(tree, members, loop_what[members])}"
                             f"{_counts(members, logs, exemplars)} ← N+1" + (f" ✗ {failed} failed" if failed else ""))
            continue
        kids = visible(tree.children.get(sid, []))
        if len(lines) - 1 >= max_lines:
            hidden += 1
        else:
            text, marks = _span_line(tree, sid, bottlenecks)
            deep = f"(depth {depth}) " if depth > _MAX_INDENT else ""
            lines.append(f"{prefix}{'└── ' if last else '├── '}{deep}{text}{_counts((sid,), logs, exemplars)}{marks}")
        child_prefix = prefix if depth >= _MAX_INDENT else prefix + ("    " if last else "│   ")
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], child_prefix, i == len(kids) - 1, depth + 1))
    if hidden:
        lines.append(f"… {hidden} more spans")
    lines.append(f"└── Response (total: {fmt_ms(tree.end_ns - tree.start_ns)})")
    return "\n".join(lines)
