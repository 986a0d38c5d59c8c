"""Pure: a correlation as text for a model, findings first, cut to a token budget.

An agent that pulls a raw 2,000-span trace into its context spends most of it on spans that
explain nothing. This writes what it needs, in the order it needs it, and stops at the budget:

  1. one line on the trace and one on the sources (a partial answer says so) — always;
  2. every finding, grouped (476 findings of a 10k-span trace are nine kinds of thing): the
     first of each group verbatim, with its span, duration and share of the trace;
  3. the critical path as a short chain of operations;
  4. each finding's evidence: the log lines and span events on its spans;
  5. error log lines; then other spans (most self time first), other lines, exemplars;
  6. what was left out, and how to get it.

Each tier is filled before the next starts, so a small budget keeps the verdict and loses the
detail. Tokens are counted with `correlator.tokens.estimate_tokens`, which over-counts, so a
budget holds for the model that reads it. Backend text (log lines, attributes) is untrusted:
it is flattened to one line and shortened, so a line cannot forge a section of this summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from correlator.analysis import fmt_ms
from correlator.analysis.common import label
from correlator.errors import InvalidTraceId
from correlator.ids import parse_trace_id
from correlator.model import Correlation, Exemplar, Finding, LogLine, SourceStatus, Span
from correlator.spantree import SpanTree
from correlator.timeparams import rfc3339_ns
from correlator.tokens import estimate_tokens

__all__ = ["MAX_BUDGET", "MIN_BUDGET", "FindingGroup", "clean", "clean_strings", "fit_lines", "group_findings", "span_detail", "span_text",
           "trace_summary"]

MIN_BUDGET = 300  # the header, the sources and the trailer need ~150 tokens
MAX_BUDGET = 100_000
_ERROR_LEVELS = frozenset({"error", "err", "fatal", "critical", "crit", "emerg", "alert", "panic"})
_MAX_TEXT = 200  # characters of one log line or attribute value
_EVIDENCE_PER_FINDING = 6
_CHAIN_HOPS = 8
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_TIMES = "\u00d7"  # the multiplication sign, escaped so linters do not take it for an x
_H_ERRORS = "Error log lines:"
_H_SPANS = "Other operations (most self time first; repeats folded, the slowest named):"
_H_LOGS = "Other log lines:"
_H_EXEMPLARS = "Exemplars:"
_H_INFERRED = "Lines without a trace ID, placed by service and time (not the trace's own lines):"
_MAX_NOTES = 3
# C0/C1 controls (every line break str.splitlines knows: \x85, \v, \f, \x1c-\x1e too), the Unicode line and
# paragraph separators, and the bidi overrides that can make text read differently from what it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def clean(text: str, limit: int = _MAX_TEXT) -> str:
    """Untrusted text on one line: control characters and line breaks become spaces."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class FindingGroup:
    """Findings that say the same thing about the same operation (numbers aside)."""

    kind: str
    first: Finding  # the highest-impact one: findings arrive sorted by impact
    members: tuple[Finding, ...]


def group_findings(findings: Sequence[Finding]) -> list[FindingGroup]:
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.kind, _NUMBER.sub("#", finding.message)), []).append(finding)
    return [FindingGroup(kind, members[0], tuple(members)) for (kind, _shape), members in groups.items()]


@dataclass(slots=True)
class _Budget:
    """Lines admitted while their estimated tokens (plus one per line break) stay under a limit."""

    limit: int
    used: int = 0
    full: bool = False

    def take(self, line: str, heading: str | None = None) -> bool:
        """Admit `line` (and the heading of its section, when it is the section's first line) if it fits."""
        cost = estimate_tokens(line) + 1 + (estimate_tokens(heading) + 1 if heading else 0)
        if self.used + cost > self.limit:
            self.full = True
            return False
        self.used += cost
        return True


@dataclass(slots=True)
class _Counts:
    spans: int = 0
    logs: int = 0
    exemplars: int = 0
    evidence: int = 0
    findings: int = 0
    shown_spans: set[str] = field(default_factory=set)
    shown_logs: set[int] = field(default_factory=set)


def _ids_pattern(trace_hex: str) -> re.Pattern[str]:
    """Every spelling of the trace ID a line may carry: each costs ~21 tokens and says nothing new."""
    try:
        spellings = parse_trace_id(trace_hex).spellings
    except InvalidTraceId:
        spellings = (trace_hex,)
    return re.compile("|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True)), re.IGNORECASE)


def _log_line(line: LogLine, origin_ns: int | None, span_id: str | None, ids: re.Pattern[str] | None = None) -> str:
    when = f"+{fmt_ms(line.timestamp_ns - origin_ns)}" if origin_ns is not None else rfc3339_ns(line.timestamp_ns)[11:23]
    where = f" span {span_id}" if span_id else ""
    text = ids.sub("<trace_id>", line.line) if ids is not None else line.line
    if span_id:
        text = text.replace(span_id, "<span_id>")
    return f"{when} {clean(line.service or '-', 60)} [{clean(line.level or '-', 12)}]{where}: {clean(text)}"


def _event_line(span: Span, index: int, origin_ns: int) -> str:
    event = span.events[index]
    attrs = ", ".join(f"{clean(str(k), 40)}={clean(str(v), 80)}" for k, v in list(event.attributes.items())[:4])
    return f"+{fmt_ms(event.time_ns - origin_ns)} event {clean(event.name, 80)}" + (f" ({attrs})" if attrs else "")


def _span_line(tree: SpanTree, sid: str) -> str:
    span = tree.by_id[sid]
    own = tree.self_ns[sid]
    status = " ERROR" if span.status == "error" else ""
    self_part = f", self {fmt_ms(own)}" if own != span.duration_ns else ""
    return f"{clean(label(span), 120)} {fmt_ms(span.duration_ns)}{self_part}{status} [span {sid}]"


def _by_self_time(tree: SpanTree) -> list[str]:
    self_ns = tree.self_ns
    return sorted(tree.by_id, key=lambda s: (-self_ns[s], s))


def _span_groups(tree: SpanTree, ranked: Sequence[str], skip: set[str]) -> Iterable[tuple[str, str]]:
    """Spans not shown yet, one line per operation (most self time first), naming its slowest span."""
    groups: dict[tuple[str, str], list[str]] = {}
    by_id = tree.by_id
    for sid in ranked:
        if sid not in skip:
            span = by_id[sid]
            groups.setdefault((span.service, span.operation), []).append(sid)
    for (service, operation), sids in groups.items():
        name = f"{service}: {operation}"
        if len(sids) == 1:
            yield "- " + _span_line(tree, sids[0]), sids[0]
            continue
        own = [tree.self_ns[s] for s in sids]
        total = sum(tree.by_id[s].duration_ns for s in sids)
        yield (f"- {clean(name, 120)} {_TIMES}{len(sids)}: self {fmt_ms(min(own))} to {fmt_ms(max(own))}, "
               f"total {fmt_ms(total)}; "
               f"slowest {_span_line(tree, sids[0]).rsplit(' [', 1)[0].rsplit(' ', 1)[-1]} [span {sids[0]}]"), sids[0]


def _chain(tree: SpanTree, path: Sequence[str]) -> str:
    """The critical path as operations in order of first appearance, repeats folded: short for any size."""
    order: dict[tuple[str, str], list[int]] = {}  # (service, operation) → [count, self ns]
    for sid in path:
        span = tree.by_id.get(sid)
        if span is None:
            continue
        entry = order.setdefault((span.service, span.operation), [0, 0])
        entry[0] += 1
        entry[1] += tree.self_ns[sid]
    hops = []
    for (service, operation), (count, own) in order.items():
        name = clean(f"{service}: {operation}", 80)
        hops.append(name if count == 1 else f"{name} {_TIMES}{count} (self {fmt_ms(own)})")
    if len(hops) > _CHAIN_HOPS:
        hidden = len(hops) - _CHAIN_HOPS
        hops = [*hops[: _CHAIN_HOPS - 2], f"… {hidden} more operations …", *hops[-2:]]
    return " → ".join(hops)


def _sources_line(c: Correlation) -> tuple[str, bool]:
    parts, partial = [], False
    for name, report in c.sources.items():
        bad = report.status not in (SourceStatus.OK, SourceStatus.NOT_FOUND)
        partial = partial or bad or report.truncated
        text = f"{name} {report.status.value} ({report.items} items{', truncated' if report.truncated else ''})"
        if report.error:
            text += f": {clean(report.error, 160)}"
        if report.cut:
            text += f": {clean(report.cut, 240)}"
        parts.append(text)
    prefix = "PARTIAL ANSWER — sources: " if partial else "Sources: "
    return prefix + "; ".join(parts), partial


def _finding_short(n: int, group: FindingGroup) -> str:
    f = group.first
    more = f" (+{len(group.members) - 1} like it)" if len(group.members) > 1 else ""
    return f"{n}. [{f.severity.value}] {f.kind}: {clean(f.message, 110)}{more}"


def _finding_head(n: int, group: FindingGroup, tree: SpanTree | None, total_ns: int) -> str:
    f = group.first
    head = f"{n}. [{f.severity.value}] {f.kind}: {clean(f.message, 300)}"
    details = []
    if tree is not None and f.span_ids and f.span_ids[0] in tree.by_id:
        span = tree.by_id[f.span_ids[0]]
        named = label(span)
        # The message usually names the span already: the ID and duration are what it adds.
        what = "" if named in f.message else f"{clean(named, 100)}, "
        details.append(f"span {span.span_id} ({what}{fmt_ms(span.duration_ns)})")
    if f.impact_ns > 0 and total_ns > 0:
        share = f.impact_ns / total_ns
        details.append(f"{share:.0%} of the critical path" if share >= 0.01 else "<1% of the critical path")
    if len(group.members) > 1:
        others = [m.span_ids[0] for m in group.members[1:4] if m.span_ids]
        details.append(f"and {len(group.members) - 1} more like it" + (f" (spans {', '.join(others)}…)" if others else ""))
    return head + (" — " + "; ".join(details) if details else "")


def _evidence(group: FindingGroup, tree: SpanTree, logs_by_span: Mapping[str, list[int]], c: Correlation,
              origin: int, seen: set[int], ids: re.Pattern[str]) -> Iterable[tuple[str, int | None]]:
    """Lines that explain a finding: its spans' log lines (errors first; none already quoted) and span events."""
    spans = [sid for sid in group.first.span_ids[:_EVIDENCE_PER_FINDING] if sid in tree.by_id]
    indices = [i for sid in spans for i in logs_by_span.get(sid, []) if i not in seen]
    indices.sort(key=lambda i: ((c.logs[i].level or "").lower() not in _ERROR_LEVELS, c.logs[i].timestamp_ns))
    for i in indices[:_EVIDENCE_PER_FINDING]:
        yield "   log " + _log_line(c.logs[i], origin, c.log_placements[i].span_id, ids), i
    events = [(sid, k) for sid in spans for k in range(len(tree.by_id[sid].events))]
    for sid, k in events[:_EVIDENCE_PER_FINDING]:
        yield f"   span {sid} " + _event_line(tree.by_id[sid], k, origin), None


def trace_summary(c: Correlation, tree: SpanTree | None, budget_tokens: int, more_hint: str) -> str:
    """The findings-first summary of `c`, at most `budget_tokens` (estimated) long."""
    # Kept back for the lines written last: what was left out (counted at their largest) and how to get it.
    trailer = _trailer(budget_tokens, 9_999_999, 9_999_999, 9_999_999, more_hint)
    reserve = estimate_tokens(trailer) + estimate_tokens(_more_groups(99)) + 3
    budget = _Budget(max(budget_tokens - reserve, 0))
    shown = _Counts()
    total_spans = len(tree.by_id) if tree is not None else 0
    origin = tree.start_ns if tree is not None else None
    total_ns = (tree.end_ns - tree.start_ns) if tree is not None else 0
    ids = _ids_pattern(c.trace_id)

    head: list[str] = []
    if tree is not None and tree.roots:
        root = tree.by_id[tree.roots[0]]
        errors = sum(1 for s in tree.by_id.values() if s.status == "error")
        services = len({s.service for s in tree.by_id.values()})
        head.append(f"Trace {c.trace_id}: {clean(label(root), 160)}, {fmt_ms(total_ns)}, {total_spans} spans, "
                    f"{services} services, {errors} error spans, {len(c.logs)} log lines, {len(c.exemplars)} exemplars")
    else:
        head.append(f"Trace {c.trace_id}: not in Jaeger; {len(c.logs)} log lines, {len(c.exemplars)} exemplars carry its ID")
    sources, _partial = _sources_line(c)
    head.append(sources)
    # What the reader must know about the answer's certainty (clock skew, a cut answer, …): with the sources.
    head.extend(f"Note: {clean(note, 240)}" for note in c.notes[:_MAX_NOTES])
    if len(c.notes) > _MAX_NOTES:
        head.append(f"Note: {len(c.notes) - _MAX_NOTES} more notes in the full answer")
    groups = group_findings(c.findings)
    for line in (*head, "", _findings_heading(c, groups)):
        budget.used += estimate_tokens(line) + 1  # always shown, even past a tiny budget

    # Every group's short headline first, so the verdict survives a small budget. Then the critical
    # path; then, finding by finding, the full headline (span, share, siblings) and its evidence.
    finding_lines: list[list[str]] = []
    for n, group in enumerate(groups, 1):
        line = _finding_short(n, group)
        if not budget.take(line):
            break
        finding_lines.append([line])
        shown.findings += len(group.members)

    chain_line = ""
    if tree is not None:
        # The analysis' own path (recomputing it for hold times cost more than the rest of the summary).
        candidate = f"Critical path ({len(c.critical_path)} spans): {_chain(tree, c.critical_path)}"
        if budget.take(candidate):
            chain_line = candidate
    logs_by_span: dict[str, list[int]] = {}
    for i, placement in enumerate(c.log_placements):
        if placement.span_id is not None:
            logs_by_span.setdefault(placement.span_id, []).append(i)
    for n, (group, lines) in enumerate(zip(groups, finding_lines, strict=False), 1):
        full = _finding_head(n, group, tree, total_ns)
        extra = estimate_tokens(full) - estimate_tokens(lines[0])
        if budget.used + extra <= budget.limit:
            budget.used += extra
            lines[0] = full
        if tree is None or origin is None:
            continue
        for text, log_index in _evidence(group, tree, logs_by_span, c, origin, set(shown.shown_logs), ids):
            if not budget.take(text):
                break
            lines.append(text)
            shown.evidence += 1
            if log_index is not None:
                shown.logs += 1
                shown.shown_logs.add(log_index)
        shown.shown_spans.update(sid for sid in group.first.span_ids[:1])

    error_lines: list[str] = []
    for i, entry in enumerate(c.logs):
        if i in shown.shown_logs or (entry.level or "").lower() not in _ERROR_LEVELS:
            continue
        text = "- " + _log_line(entry, origin, c.log_placements[i].span_id, ids)
        if not budget.take(text, None if error_lines else _H_ERRORS):
            break
        error_lines.append(text)
        shown.shown_logs.add(i)

    span_lines: list[str] = []
    if tree is not None:
        ranked = _by_self_time(tree)
        for text, named in _span_groups(tree, ranked, shown.shown_spans):
            if not budget.take(text, None if span_lines else _H_SPANS):
                break
            span_lines.append(text)
            shown.shown_spans.add(named)
        if not budget.full:  # room left: the remaining spans one by one, most self time first
            for sid in ranked:
                if sid in shown.shown_spans:
                    continue
                text = "- " + _span_line(tree, sid)
                if not budget.take(text, None if span_lines else _H_SPANS):
                    break
                span_lines.append(text)
                shown.shown_spans.add(sid)

    log_lines: list[str] = []
    for i, entry in enumerate(c.logs):
        if i in shown.shown_logs:
            continue
        text = "- " + _log_line(entry, origin, c.log_placements[i].span_id, ids)
        if not budget.take(text, None if log_lines else _H_LOGS):
            break
        log_lines.append(text)
        shown.shown_logs.add(i)

    exemplar_lines: list[str] = []
    for ex, placement in zip(c.exemplars, c.exemplar_placements, strict=True):
        text = "- " + _exemplar_line(ex, placement.span_id)
        if not budget.take(text, None if exemplar_lines else _H_EXEMPLARS):
            break
        exemplar_lines.append(text)

    inferred_lines: list[str] = []
    for entry, placement in zip(c.inferred_logs, c.inferred_placements, strict=True):
        sure = placement.confidence.value if placement.confidence is not None else "unknown"
        text = f"- ({sure} confidence) " + _log_line(entry, origin, placement.span_id, ids)
        if not budget.take(text, None if inferred_lines else _H_INFERRED):
            break
        inferred_lines.append(text)

    out = list(head)
    out.append("")
    out.append(_findings_heading(c, groups))
    if groups:
        out.extend(line for lines in finding_lines for line in lines)
        if len(finding_lines) < len(groups):
            out.append(_more_groups(len(groups) - len(finding_lines)))
    if chain_line:
        out.append(chain_line)
    if error_lines:
        out.append(_H_ERRORS)
        out.extend(error_lines)
    if span_lines:
        out.append(_H_SPANS)
        out.extend(span_lines)
    if log_lines:
        out.append(_H_LOGS)
        out.extend(log_lines)
    if exemplar_lines:
        out.append(_H_EXEMPLARS)
        out.extend(exemplar_lines)
    if inferred_lines:
        out.append(_H_INFERRED)
        out.extend(inferred_lines)
    left_spans = total_spans - len(shown.shown_spans)
    left_logs = len(c.logs) - len(shown.shown_logs) + len(c.inferred_logs) - len(inferred_lines)
    left_exemplars = len(c.exemplars) - len(exemplar_lines)
    if left_spans > 0 or left_logs > 0 or left_exemplars > 0 or len(finding_lines) < len(groups):
        out.append("")
        out.append(_trailer(budget_tokens, left_spans, left_logs, left_exemplars, more_hint))
    return _fit("\n".join(out), budget_tokens)


def _findings_heading(c: Correlation, groups: Sequence[FindingGroup]) -> str:
    if not groups:
        return "Findings: none (no bottleneck, N+1, gap, error, long span or fan-out crossed its threshold)"
    return f"Findings ({len(c.findings)} in {len(groups)} groups, by time on the critical path):"


def _more_groups(n: int) -> str:
    return f"… {n} more finding groups did not fit"


def _trailer(budget_tokens: int, spans: int, logs: int, exemplars: int, more_hint: str) -> str:
    return f"Left out to fit {budget_tokens} tokens: {spans} spans, {logs} log lines, {exemplars} exemplars. {more_hint}"


def _exemplar_line(ex: Exemplar, span_id: str | None) -> str:
    where = f" span {span_id}" if span_id else ""
    return f"{clean(ex.metric, 100)} = {ex.value:g}{where}"


def _fit(text: str, budget_tokens: int) -> str:
    """Last guard: the always-shown lines of a huge header may not fit a tiny budget; cut lines from the end."""
    if estimate_tokens(text) <= budget_tokens:
        return text
    lines = text.split("\n")
    while len(lines) > 1 and estimate_tokens("\n".join(lines)) > budget_tokens:
        lines.pop(-2 if len(lines) > 2 else -1)
    return "\n".join(lines)


def clean_strings(value: Any) -> Any:
    """Every string in a JSON-like body made one clean line (the body is rendered to text afterwards)."""
    if isinstance(value, str):
        return clean(value, 10_000)
    if isinstance(value, dict):
        return {k: clean_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_strings(v) for v in value]
    return value


def fit_lines(text: str, budget_tokens: int, more_hint: str) -> str:
    """`text`'s lines in order while they fit the budget; then how many were left out and where the rest is."""
    lines = text.rstrip("\n").split("\n")
    budget = _Budget(max(budget_tokens - estimate_tokens(f"… 9999999 more lines did not fit. {more_hint}") - 2, 0))
    kept = [line for line in lines if not budget.full and budget.take(line)]
    if len(kept) < len(lines):
        kept += ["", f"… {len(lines) - len(kept)} more lines did not fit. {more_hint}"]
    return "\n".join(kept)


def span_detail(c: Correlation, tree: SpanTree | None, span_id: str, budget_tokens: int,
                findings_of: Callable[[str], Sequence[Finding]]) -> str | None:
    """One span: its place in the trace, attributes, events, log lines and exemplars; None if unknown."""
    if tree is None or span_id not in tree.by_id:
        return None
    span = tree.by_id[span_id]
    origin = tree.start_ns
    budget = _Budget(max(budget_tokens - 40, 0))
    out = [f"Span {span_id}: {_span_line(tree, span_id)}",
           f"kind {span.kind}, status {span.status}" + (f" ({clean(span.status_message, 200)})" if span.status_message else "")
           + f", starts +{fmt_ms(span.start_ns - origin)}, depth {tree.depth[span_id]}, parent {span.parent_span_id or '-'}"]
    for line in out:
        budget.used += estimate_tokens(line) + 1
    sections: list[tuple[str, list[str]]] = [
        ("Findings", [f"- [{f.severity.value}] {f.kind}: {clean(f.message, 300)}" for f in findings_of(span_id)]),
        ("Attributes", [f"- {clean(str(k), 80)} = {clean(str(v))}" for k, v in span.attributes.items()]),
        ("Events", ["- " + _event_line(span, k, origin) for k in range(len(span.events))]),
        ("Log lines", ["- " + _log_line(line, origin, span_id, _ids_pattern(c.trace_id))
                       for line, p in zip(c.logs, c.log_placements, strict=True) if p.span_id == span_id]),
        ("Exemplars", ["- " + _exemplar_line(ex, None)
                       for ex, p in zip(c.exemplars, c.exemplar_placements, strict=True) if p.span_id == span_id]),
        ("Children", ["- " + _span_line(tree, kid) for kid in tree.children.get(span_id, [])]),
    ]
    left = 0
    for title, lines in sections:
        if not lines:
            continue
        taken = [line for line in lines if not budget.full and budget.take(line)]
        left += len(lines) - len(taken)
        if taken:
            out.append(f"{title} ({len(lines)}):")
            out.extend(taken)
    if left:
        out.append(f"… {left} more lines did not fit {budget_tokens} tokens; call again with a larger budget_tokens")
    return _fit("\n".join(out), budget_tokens)


def span_text(c: Correlation, tree: SpanTree | None, span: str, budget: int) -> str | None:
    """MCP get_span's text (a plain function of the model: a big trace's is made in the worker process)."""
    def findings_of(sid: str) -> list[Finding]:
        return [f for f in c.findings if sid in f.span_ids]

    return span_detail(c, tree, span, budget, findings_of)
