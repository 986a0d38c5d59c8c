"""One problem, one finding: duplicates folded together, and each finding's spans quoted.

A span that is the bottleneck and also long for its operation is one problem told twice;
the long-span verdict becomes evidence of the bottleneck. Every finding then carries the
events and log lines of its spans — what the application itself said about them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from correlator.analysis.common import Context, new_finding
from correlator.analysis.events import _MAX_QUOTES, _MAX_TEXT, event_text, quotes
from correlator.analysis.identity import native_function
from correlator.model import Finding, LogLine, Span, SpanEvent

__all__ = ["merge"]

_QUOTED_SPANS = 20  # a 3,000-call loop is quoted from its first calls, not all of them


def _fold_long_spans(findings: list[Finding]) -> list[Finding]:
    if all(f.kind != "long_span" for f in findings):
        return list(findings)  # nothing to fold (most traces)
    bottleneck = {f.span_ids[0]: i for i, f in enumerate(findings) if f.kind == "bottleneck" and f.span_ids}
    out = list(findings)
    dropped: set[int] = set()
    for i, finding in enumerate(findings):
        if finding.kind != "long_span" or not finding.span_ids or finding.span_ids[0] not in bottleneck:
            continue
        j = bottleneck[finding.span_ids[0]]
        target = out[j]
        extra = {k: v for k, v in finding.evidence.items() if k not in target.evidence}
        out[j] = _with_evidence(target, {**target.evidence, "long_span": extra})
        dropped.add(i)
    return [f for i, f in enumerate(out) if i not in dropped]


def merge(ctx: Context, findings: list[Finding]) -> list[Finding]:
    out = _fold_long_spans(findings)
    by_id, origin, logs = ctx.tree.by_id, ctx.tree.start_ns, ctx.span_logs
    # Natively (native/src/quotes.rs `quote_findings`): the loop below in one call, the same findings
    # (tests/test_quotes_native.py); None: the loop quotes them.
    native = native_function("quote_findings")
    quoted: list[Finding] | None = native(out, by_id, logs, origin, event_text, SpanEvent, _MAX_QUOTES, _MAX_TEXT,
                                          _QUOTED_SPANS, new_finding) if native is not None else None
    return quoted if quoted is not None else _quote_python(out, by_id, logs, origin)


def _quote_python(out: list[Finding], by_id: Mapping[str, Span], logs: Mapping[str, Sequence[LogLine]],
                  origin: int) -> list[Finding]:
    """`merge`'s quoting in Python: the reference."""
    for i, finding in enumerate(out):
        if "quotes" in finding.evidence:
            continue  # its own quotes stand
        # `quotes` finds nothing to say for spans with neither events nor lines: one pass, no separate test.
        said = quotes([by_id[sid] for sid in finding.span_ids[:_QUOTED_SPANS] if sid in by_id], logs, origin)
        if said:
            out[i] = _with_evidence(finding, {**finding.evidence, "quotes": said})
    return out


def _with_evidence(finding: Finding, evidence: Mapping[str, Any]) -> Finding:
    """`replace(finding, evidence=…)` without `dataclasses.replace`'s field walk (a few µs a finding, most of a
    small trace's findings get quotes; bench P3). Every field is passed: a new one must be added here too."""
    return new_finding(finding.kind, finding.severity, finding.message, finding.span_ids, evidence, finding.impact_ns)
