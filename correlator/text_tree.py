"""Pure: the seed tutorial's tree, drawn from a real trace, with when each span started.

    Request: GET /api/courses
    ├── ● +0ms api-gateway: GET /api/courses (145ms)
    │   ├── ● +5.0ms auth-service: validate token (15ms)
    │   └── ● +20ms course-service: GET /courses (120ms)
    │       ├── ● +25ms course-service: SELECT courses (80ms) ← Bottleneck!
    │       └── ● +106ms course-service: cache lookup (5.0ms)
    └── Response (total: 145ms)

`+25ms` is the start offset from the trace's first span; `●` marks the critical path. A span's
events (and Jaeger span logs) follow it as `· +2.9s …` lines. N+1 loops, capped fan-outs and
any run of 3+ same-target siblings collapse into one line (`× 10 HTTP GET → /route (38–72ms,
3 at a time, 4 waves, 250ms)`); errors are marked, and each span shows how many log lines and
exemplars the join attached to it. Iterative, with the indent capped, so a trace 5,000 spans
deep draws like a shallow one.
"""

from __future__ import annotations

from collections.abc import Mapping

from correlator.analysis import Analysis, fmt_ms, is_error
from correlator.analysis.common import error_detail, shorten
from correlator.analysis.events import event_text
from correlator.analysis.fan_out import max_concurrency
from correlator.analysis.identity import label, operation_key, operation_label
from correlator.spantree import SpanTree, bfs

__all__ = ["render_tree"]

_MAX_INDENT = 40  # levels drawn as bars; deeper lines keep this indent and say their depth
_MIN_RUN = 3  # same-target siblings in a row that collapse into one line
_MAX_EVENTS = 3  # per span; the rest are counted
CRITICAL = "● "


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counts(ids: tuple[str, ...], logs: Mapping[str, int], exemplars: Mapping[str, int]) -> str:
    n_logs, n_exemplars = sum(logs.get(i, 0) for i in ids), sum(exemplars.get(i, 0) for i in ids)
    parts = ([_plural(n_logs, "log")] if n_logs else []) + ([_plural(n_exemplars, "exemplar")] if n_exemplars else [])
    return f" [{', '.join(parts)}]" if parts else ""


class _Group:
    """Sibling spans drawn as one line: a finding's loop or pool, or a run of same-target calls."""

    __slots__ = ("below", "mark", "members", "what")

    def __init__(self, members: tuple[str, ...], what: str, mark: str, below: int | None = None) -> None:
        self.members, self.what, self.mark = members, what, mark
        self.below = below  # spans nested inside the members; None until the line is drawn


def _finding_groups(tree: SpanTree, analysis: Analysis) -> dict[str, _Group]:
    """Each member of an N+1 loop or a capped fan-out → its group."""
    group_of: dict[str, _Group] = {}
    for finding in analysis.findings:
        if finding.kind == "n_plus_one":
            mark = " ← N+1"
            retries = finding.evidence.get("retries")
            if retries:
                mark += f" (+{retries} {'retry' if retries == 1 else 'retries'})"
        elif finding.kind == "fan_out" and "max_concurrent" in finding.evidence:
            mark = f" ← capped at {finding.evidence['max_concurrent']}"
        else:
            continue
        members = tuple(sid for sid in finding.span_ids if sid in tree.by_id and sid not in group_of)
        if len(members) < 2:
            continue
        first = tree.by_id[members[0]]
        what = str(finding.evidence.get("statement") or operation_label(first))
        group = _Group(members, what, mark)
        group_of.update(dict.fromkeys(members, group))
    return group_of


def _group_line(tree: SpanTree, group: _Group) -> str:
    spans = [tree.by_id[sid] for sid in group.members]
    durations = [sp.duration_ns for sp in spans]
    lo, hi = min(durations), max(durations)
    each = fmt_ms(lo) if fmt_ms(lo) == fmt_ms(hi) else f"{fmt_ms(lo).removesuffix('ms')}–{fmt_ms(hi)}"
    start, end = min(sp.start_ns for sp in spans), max(sp.end_ns for sp in spans)
    k = max_concurrency(spans)
    if k <= 1:
        stats = f"{fmt_ms(sum(durations))}, {each} each"
    elif k >= len(spans):
        stats = f"{each}, all at once, {fmt_ms(end - start)}"
    else:
        stats = f"{each}, {k} at a time, {-(-len(spans) // k)} waves, {fmt_ms(end - start)}"
    return f"× {len(spans)} {shorten(group.what, 80)} ({stats})"


def _descendants(tree: SpanTree, sid: str) -> int:
    count, stack = 0, list(tree.children[sid])
    while stack:
        count += 1
        stack.extend(tree.children[stack.pop()])
    return count


def _nested(tree: SpanTree, run: list[str], keep: set[str]) -> int | None:
    """How many spans the run's members contain, or None when one of them must stay visible."""
    count = 0
    for member in run:
        if member in keep:
            return None
        if tree.children[member]:
            inside = bfs(tree, member)
            if not keep.isdisjoint(inside):
                return None
            count += len(inside) - 1
    return count


def _visible(tree: SpanTree, kids: list[str], group_of: dict[str, _Group],
             keep: set[str]) -> list[tuple[str, _Group | None]]:
    """Children to draw: a group stands in its first member's place; runs of same-target siblings fold
    (unless that would hide a span a finding points at: the bottleneck, a failure's root cause)."""
    out: list[tuple[str, _Group | None]] = []
    seen: set[int] = set()
    i = 0
    while i < len(kids):
        kid = kids[i]
        group = group_of.get(kid)
        if group is not None:
            if id(group) not in seen:
                seen.add(id(group))
                out.append((kid, group))
            i += 1
            continue
        # Same name first (a string comparison), the target only for a run that long.
        span = tree.by_id[kid]
        j = i + 1
        while j < len(kids) and kids[j] not in group_of and tree.by_id[kids[j]].operation == span.operation:
            j += 1
        if j - i >= _MIN_RUN:
            key, end = operation_key(span), i + 1
            while end < j and operation_key(tree.by_id[kids[end]]) == key:
                end += 1
            j = end
        below = _nested(tree, kids[i:j], keep) if j - i >= _MIN_RUN else None
        if below is not None:
            out.append((kid, _Group(tuple(kids[i:j]), operation_label(tree.by_id[kid]), "", below)))
            i = j
            continue
        out.append((kid, None))
        i += 1
    return out


def render_tree(tree: SpanTree, analysis: Analysis, log_counts: Mapping[str, int] | None = None,
                exemplar_counts: Mapping[str, int] | None = None, title: str | None = None,
                max_lines: int = 2000) -> str:
    logs, exemplars = log_counts or {}, exemplar_counts or {}
    if title is None:
        title = f"Request: {tree.by_id[tree.roots[0]].operation}" if tree.roots else "Request: (empty trace)"
    lines = [title]
    origin = tree.start_ns
    critical = set(analysis.critical_path)
    bottlenecks = {f.span_ids[0] for f in analysis.findings if f.kind == "bottleneck" and f.span_ids}
    group_of = _finding_groups(tree, analysis)
    keep = bottlenecks | {f.span_ids[0] for f in analysis.findings
                          if f.kind == "error" and f.severity.value == "critical" and f.span_ids}
    hidden = 0  # span lines past `max_lines`

    def offset(ns: int) -> str:
        return f"+{fmt_ms(ns - origin)}"

    # Every root draws with "├──": the closing "└── Response" line ends the tree, as in the seed.
    stack: list[tuple[str, _Group | None, str, bool, int]] = [
        (r, g, "", False, 0) for r, g in reversed(_visible(tree, tree.roots, group_of, keep))]
    while stack:
        sid, group, prefix, last, depth = stack.pop()
        branch = "└── " if last else "├── "
        if group is not None:
            if len(lines) - 1 >= max_lines:
                hidden += len(group.members)
                continue
            failed = sum(1 for m in group.members if is_error(tree.by_id[m]))
            on_path = CRITICAL if any(m in critical for m in group.members) else ""
            if group.below is None:  # counted only for lines drawn: a loop under the root may hold the whole trace
                group.below = sum(_descendants(tree, m) for m in group.members)
            nested = f" +{_plural(group.below, 'nested span')}" if group.below else ""
            lines.append(f"{prefix}{branch}{on_path}{offset(tree.by_id[sid].start_ns)} {_group_line(tree, group)}{nested}"
                         f"{_counts(group.members, logs, exemplars)}{group.mark}" + (f" ✗ {failed} failed" if failed else ""))
            continue
        kids = _visible(tree, tree.children.get(sid, []), group_of, keep)
        child_prefix = prefix if depth >= _MAX_INDENT else prefix + ("    " if last else "│   ")
        if len(lines) - 1 >= max_lines:
            hidden += 1
        else:
            span = tree.by_id[sid]
            marks = " ← Bottleneck!" if sid in bottlenecks else ""
            if is_error(span):
                detail = error_detail(span)  # the exception's message before a generic status text
                marks += " ✗ error" + (f": {shorten(detail, 80)}" if detail else "")
            deep = f"(depth {depth}) " if depth > _MAX_INDENT else ""
            on_path = CRITICAL if sid in critical else ""
            lines.append(f"{prefix}{branch}{deep}{on_path}{offset(span.start_ns)} {label(span)} ({fmt_ms(span.duration_ns)})"
                         f"{_counts((sid,), logs, exemplars)}{marks}")
            bar = "│   " if kids else ""  # events sit above the children, the bar running on to them
            for event in span.events[:_MAX_EVENTS]:
                said = shorten(event_text(event) or "(unnamed event)", 100)
                lines.append(f"{child_prefix}{bar}· {offset(event.time_ns)} {said}")
            if len(span.events) > _MAX_EVENTS:
                lines.append(f"{child_prefix}{bar}· … {_plural(len(span.events) - _MAX_EVENTS, 'more event')}")
        for i in range(len(kids) - 1, -1, -1):
            kid, kid_group = kids[i]
            stack.append((kid, kid_group, child_prefix, i == len(kids) - 1, depth + 1))
    if hidden:
        lines.append(f"… {hidden} more spans")
    lines.append(f"└── Response (total: {fmt_ms(tree.end_ns - origin)})")
    return "\n".join(lines)
