"""Pure: read a trace the way the seed tutorial teaches, deterministically.

The critical path first, then a tuple of small detectors, each `(Context) -> list[Finding]`:
bottleneck, long span, N+1, gap (incl. client → server hop latency), error root cause,
fan-out, malformed input. Findings are sorted by impact — the time on the critical path they
explain — then severity and kind. No I/O; never raises on any tree `build_tree` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from correlator.analysis.bottleneck import bottleneck
from correlator.analysis.common import SEVERITY_RANK, Context, fmt_ms, is_error, span_pass
from correlator.analysis.critical_path import CriticalPath, Section, critical_path
from correlator.analysis.errors import errors
from correlator.analysis.fan_out import fan_out
from correlator.analysis.gap import gaps
from correlator.analysis.identity import OperationKeys, label, operation_key, operation_label, target
from correlator.analysis.long_span import long_spans
from correlator.analysis.malformed import malformed
from correlator.analysis.merge import merge
from correlator.analysis.n_plus_one import (
    n_plus_one,
    n_plus_one_groups,
    normalise_statement,
)
from correlator.analysis.retries import find_retries
from correlator.config import AnalysisSettings
from correlator.construct import fast_constructor
from correlator.model import Finding, LogLine, Severity
from correlator.spantree import SpanTree

__all__ = ["DETECTORS", "Analysis", "CriticalPath", "Section", "analyse", "critical_path", "fmt_ms", "is_error", "label",
           "normalise_statement", "operation_key", "operation_label", "target"]

Detector = Callable[[Context], list[Finding]]
DETECTORS: tuple[Detector, ...] = (bottleneck, long_spans, n_plus_one, gaps, errors, fan_out, malformed)


@dataclass(frozen=True, slots=True)
class Analysis:
    critical_path: tuple[str, ...]  # span ids, root first
    findings: tuple[Finding, ...]  # by impact, then severity, then kind
    critical_ns: Mapping[str, int] = field(default_factory=dict)  # ns each critical-path span holds the path
    sections: tuple[Section, ...] = ()  # the path as time: chronological, contiguous, non-overlapping


# One of each per correlation, without the frozen `__init__`'s `object.__setattr__` per field (every field passed).
_context = fast_constructor(Context)
_analysis = fast_constructor(Analysis)


def _failure(check: str, exc: Exception) -> Finding:
    message = f"the {check} check could not read this trace ({type(exc).__name__}: {exc})"
    return Finding("malformed", Severity.WARNING, message, (), {"problem": message, "detector": check})


def _run(detector: Detector, ctx: Context) -> list[Finding]:
    # One detector tripping over an input nobody foresaw must not cost the user the other six.
    try:
        return detector(ctx)
    except Exception as exc:
        return [_failure(detector.__name__, exc)]


def _sort_key(finding: Finding) -> tuple[int, int, str]:
    # Stable sort: within a tie each detector's own order stands (errors deepest first, …).
    return -finding.impact_ns, SEVERITY_RANK[finding.severity], finding.kind


def analyse(tree: SpanTree, settings: AnalysisSettings,
            span_logs: Mapping[str, Sequence[LogLine]] | None = None) -> Analysis:
    """`span_logs`: the log lines the join placed on each span (evidence: errors, waits, retries)."""
    if not tree.by_id:
        return Analysis((), ())
    path = critical_path(tree)
    logs = span_logs or {}
    keys = OperationKeys(tree.by_id, tree.targets)
    failing, pairs = span_pass(tree)  # one pass over the spans for `failed` and the long spans' groups
    findings: list[Finding] = []
    try:
        loops = n_plus_one_groups(tree, settings, keys)  # shared: N+1 reports them, fan-out leaves them out
        retries = find_retries(tree, keys, failing, logs)
    except Exception as exc:
        loops, retries, findings = (), {}, [_failure("n_plus_one", exc)]
    ctx = _context(tree, settings, path.span_ids, path.held_ns, tree.end_ns - tree.start_ns, logs, loops, keys, retries,
                   failing, pairs)
    findings += [f for detector in DETECTORS for f in _run(detector, ctx)]
    try:
        findings = merge(ctx, findings)
    except Exception as exc:  # the unmerged findings still stand
        findings.append(_failure("merge", exc))
    findings.sort(key=_sort_key)
    return _analysis(path.span_ids, tuple(findings), path.held_ns, path.sections)
