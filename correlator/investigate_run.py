"""The investigation as I/O: exemplars of a series → the traces to read → correlated → digested.

One deadline for everything (`investigate.deadline_seconds`): the exemplar query and every
backend call of the batch stop by then, and what did not finish is reported per trace.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from correlator.config import Settings
from correlator.correlate import Correlator, Outcome
from correlator.errors import SourceTimeout
from correlator.ids import parse_trace_id
from correlator.investigate import (
    Candidate,
    Comparison,
    Digest,
    LogPattern,
    Selection,
    Split,
    Suspect,
    candidates,
    compare,
    digest,
    log_patterns,
    select,
    split_slow,
    suspects,
)
from correlator.many import Wanted, correlate_many, refuse_when_closed
from correlator.model import Correlation, SourceStatus, Window
from correlator.sources.prometheus import PrometheusSource
from correlator.spantree import SpanTree

__all__ = ["Investigation", "Request", "TraceResult", "investigate"]


@dataclass(frozen=True, slots=True)
class Request:
    query: str
    window: Window
    limit: int
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class TraceResult:
    candidate: Candidate
    slow: bool
    outcome: Outcome | None
    failure: str | None  # why this trace could not be read; None when it was
    reading: BigReading | None = None  # a big trace's, made in the worker process (its outcome has no trace)


@dataclass(frozen=True, slots=True)
class BigReading:
    """What the investigation reads of a trace assembled in the worker process (offload.py)."""

    digest: Digest
    duration_ms: float
    root: str


def big_reading(correlation: Correlation, tree: SpanTree, slow: bool, value: float) -> BigReading | None:
    """Module level: pickled by name and run in the worker, right after a big trace's assembly (where the
    correlation still has its trace). The same figures investigate_render reads off a small trace."""
    trace = correlation.trace
    if trace is None or not trace.spans:
        return None
    root = min(trace.spans, key=lambda sp: (sp.parent_span_id is not None, sp.start_ns))
    return BigReading(digest(correlation, tree, slow, value), round((trace.end_ns - trace.start_ns) / 1_000_000, 3),
                      f"{root.service}: {root.operation}")


@dataclass(frozen=True, slots=True)
class Investigation:
    request: Request
    exemplar_count: int
    split: Split
    selection: Selection
    traces: tuple[TraceResult, ...]  # the slow ones (slowest first), then the baseline
    suspects: tuple[Suspect, ...]
    comparison: Comparison
    logs: tuple[LogPattern, ...]
    ms: float


async def investigate(settings: Settings, correlator: Correlator, prometheus: PrometheusSource, request: Request,
                      tenant: str | None = None) -> Investigation:
    """Raises SourceError/SourceTimeout when the exemplar query itself fails (nothing to investigate); ShuttingDown
    once the correlator is closing (asked for after `Correlator.aclose`, or its traces' correlation ended by it)."""
    refuse_when_closed(correlator)  # before the exemplar query: the backend clients close next
    started = time.monotonic()
    deadline = started + settings.investigate.deadline_seconds
    budget = min(settings.source_deadline(settings.prometheus), settings.investigate.deadline_seconds)
    try:
        async with asyncio.timeout(budget):
            found = await prometheus.search(request.query, request.window.start_ns, request.window.end_ns, slowest_first=True)
    except TimeoutError:
        raise SourceTimeout("prometheus", f"no exemplars within {budget:.1f}s") from None
    split = split_slow(candidates(found), request.threshold)
    selection = select(split, request.limit)
    chosen = [(c, True) for c in selection.slow] + [(c, False) for c in selection.baseline]
    wanted = [Wanted(parse_trace_id(c.trace_id), Window(c.timestamp_ns, c.timestamp_ns), (big_reading, (slow, c.value)))
              for c, slow in chosen]
    outcomes, failed = await correlate_many(correlator, wanted, tenant, deadline=deadline,
                                            concurrency=settings.investigate.concurrency)
    results, digests = [], []
    for candidate, slow in chosen:
        outcome = outcomes.get(candidate.trace_id)
        failure = failed[candidate.trace_id].reason if candidate.trace_id in failed else _why_unread(outcome)
        reading = outcome.then if outcome is not None and isinstance(outcome.then, BigReading) else None
        results.append(TraceResult(candidate, slow, outcome, failure, reading))
        if failure is None and outcome is not None and outcome.tree is not None:
            digests.append(digest(outcome.correlation, outcome.tree, slow, candidate.value))
        elif failure is None and reading is not None:
            digests.append(reading.digest)
    return Investigation(
        request, len(found), split, selection, tuple(results), tuple(suspects(digests)), compare(digests),
        tuple(log_patterns(digests)), round((time.monotonic() - started) * 1000, 3),
    )


def _why_unread(outcome: Outcome | None) -> str | None:
    if outcome is None:
        return "not correlated"
    if outcome.correlation.trace is not None and outcome.tree is not None:
        return None
    if isinstance(outcome.then, BigReading):  # read in the worker process
        return None
    report = outcome.correlation.sources.get("jaeger")
    if report is None or report.status is SourceStatus.NOT_FOUND:
        return "Jaeger does not have this trace (sampled out, expired, or not written yet)"
    return f"Jaeger {report.status.value}: {report.error or 'no trace'}"

