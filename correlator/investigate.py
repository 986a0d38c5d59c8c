"""Pure: the traces a slow series points at → what makes them slow, and is it always the same thing.

An investigation correlates the traces of a series' exemplars (`many.py`) and reads them
together here:

1. `candidates`: one candidate per trace (its slowest exemplar), slowest first;
2. `split_slow` + `select`: which are slow and which are the baseline (faster exemplars of the
   same series), and which of them to correlate within the limit;
3. `digest`: each correlated trace reduced to what the aggregate needs (symptoms with the
   operation they sit on and the time they explain, time per operation, log message shapes),
   so a 1k-span trace is not held longer than its own correlation needs;
4. `suspects`: symptoms grouped by (kind, operation[, detail]) and ranked by the time they
   explain across the slow traces; `compare`: slow vs baseline per operation; `log_patterns`:
   normalised log messages present in most slow traces.

No I/O here; `investigate_run.py` does the fetching, `investigate_render.py` the words.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from correlator.analysis import operation_key as analysis_operation_key
from correlator.model import Correlation, Exemplar, Finding, Span
from correlator.spantree import SpanTree

__all__ = [
    "MIN_PER_SIDE",
    "Candidate",
    "Change",
    "Comparison",
    "Digest",
    "LogPattern",
    "OperationKey",
    "Selection",
    "Split",
    "Suspect",
    "Symptom",
    "candidates",
    "compare",
    "digest",
    "log_patterns",
    "mask_message",
    "message_of",
    "operation_key",
    "operation_label",
    "select",
    "split_slow",
    "suspects",
]

OperationKey = tuple[str, str, str]  # (service, operation, target)
MIN_PER_SIDE = 3  # fewer traces than this on either side: the comparison says so instead of guessing
_GAP_RATIO = 2.0  # a jump of ≥ 2 times between neighbouring exemplar values separates two populations
_SYMPTOM_KINDS = frozenset({"bottleneck", "n_plus_one", "long_span", "gap", "error"})
_UNCHANGED_RATIO = 1.5  # an operation within 1.5 times its baseline median did not change
_TARGET_MAX = 60


def operation_key(span: Span) -> OperationKey:
    """What "the same operation" is across traces: the analysis package's identity (service, name
    with IDs masked, target), so the aggregate and every detector agree on it."""
    return analysis_operation_key(span)


def operation_label(key: OperationKey) -> str:
    """`SELECT courses on course-service (SELECT * FROM courses WHERE …)`; the target only when the
    name does not already say it."""
    service, operation, target = key
    shown = f" ({target if len(target) <= _TARGET_MAX else target[: _TARGET_MAX - 1] + '…'})" \
        if target and target not in operation else ""
    return f"{operation} on {service}{shown}"


# ------------------------------------------------------------------ choosing the traces


@dataclass(frozen=True, slots=True)
class Candidate:
    """One trace an exemplar of the series points at."""

    trace_id: str
    value: float  # the exemplar's observed value (the slowest, when the trace left several)
    timestamp_ns: int
    metric: str
    series: Mapping[str, str]


def candidates(exemplars: Iterable[Exemplar]) -> list[Candidate]:
    """One candidate per trace — its slowest exemplar — slowest first; NaN and infinite values dropped."""
    best: dict[str, Exemplar] = {}
    for ex in exemplars:
        if not math.isfinite(ex.value):
            continue
        kept = best.get(ex.trace_id)
        if kept is None or ex.value > kept.value:
            best[ex.trace_id] = ex
    ordered = sorted(best.values(), key=lambda ex: (-ex.value, -ex.timestamp_ns, ex.trace_id))
    return [Candidate(ex.trace_id, ex.value, ex.timestamp_ns, ex.metric, ex.series) for ex in ordered]


@dataclass(frozen=True, slots=True)
class Split:
    threshold: float | None  # slow means value ≥ threshold; None when there is nothing to split
    rule: str  # how the threshold was chosen, in words
    slow: tuple[Candidate, ...]  # slowest first
    normal: tuple[Candidate, ...]  # slowest first


def split_slow(found: Sequence[Candidate], threshold: float | None = None) -> Split:
    """Slow vs normal. A given threshold wins; else the widest jump (≥ 2 times) between neighbouring
    values separates two populations; else the upper half is "slow"."""
    if threshold is not None:
        return Split(threshold, "the threshold given", tuple(c for c in found if c.value >= threshold),
                     tuple(c for c in found if c.value < threshold))
    if not found:
        return Split(None, "no exemplars", (), ())
    if len(found) == 1:
        return Split(found[0].value, "a single trace", tuple(found), ())
    best_at, best_ratio = 0, 1.0
    for i in range(len(found) - 1):
        upper, lower = found[i].value, found[i + 1].value
        ratio = upper / lower if lower > 0 else (math.inf if upper > 0 else 1.0)
        if ratio > best_ratio:
            best_at, best_ratio = i, ratio
    if best_ratio >= _GAP_RATIO:
        cut = best_at + 1
        rule = f"the widest jump between exemplar values ({found[cut].value:g} → {found[best_at].value:g})"
    else:
        cut = (len(found) + 1) // 2
        rule = f"the upper half of the exemplar values (no jump of {_GAP_RATIO:g} times or more separates two groups)"
    return Split(found[cut - 1].value, rule, tuple(found[:cut]), tuple(found[cut:]))


@dataclass(frozen=True, slots=True)
class Selection:
    slow: tuple[Candidate, ...]  # to correlate, slowest first
    baseline: tuple[Candidate, ...]  # to correlate, spread over the normal group
    left_out: int  # candidates over the limit


def select(split: Split, limit: int) -> Selection:
    """Up to `limit` traces: about three quarters slow, the rest baseline (unused quota moves over)."""
    want_baseline = min(len(split.normal), max(limit // 4, limit - len(split.slow)))
    slow = split.slow[: limit - want_baseline]
    baseline = _spread(split.normal, want_baseline)
    return Selection(slow, baseline, len(split.slow) + len(split.normal) - len(slow) - len(baseline))


def _spread(items: Sequence[Candidate], n: int) -> tuple[Candidate, ...]:
    """`n` items evenly spaced over `items` (first and last included): a baseline of the whole range."""
    if n <= 0:
        return ()
    if n >= len(items):
        return tuple(items)
    if n == 1:
        return (items[len(items) // 2],)
    return tuple(items[round(i * (len(items) - 1) / (n - 1))] for i in range(n))


# ------------------------------------------------------------------ one trace, digested


@dataclass(frozen=True, slots=True)
class Symptom:
    kind: str  # bottleneck | n_plus_one | long_span | gap | error
    operation: OperationKey
    detail: str  # error: the masked message; n_plus_one: the statement shape; gap: the hop; else ""
    impact_ns: int  # critical-path time it explains in this trace
    measure_ns: int  # bottleneck: own time; n_plus_one: the loop's total; long_span: duration; gap: gap; error: duration
    count: int  # n_plus_one: calls; else 1
    span_id: str


@dataclass(frozen=True, slots=True)
class Digest:
    trace_id: str
    slow: bool
    value: float  # the exemplar's value
    duration_ns: int
    symptoms: tuple[Symptom, ...]
    operation_ns: Mapping[OperationKey, int]  # the own (self) time of all spans of each operation
    logs: frozenset[tuple[str, str, str]]  # (service, level, masked message)


def digest(correlation: Correlation, tree: SpanTree, slow: bool, value: float) -> Digest:
    by_id = tree.by_id
    symptoms = []
    for finding in correlation.findings:
        if finding.kind not in _SYMPTOM_KINDS or not finding.span_ids or finding.span_ids[0] not in by_id:
            continue
        if finding.kind == "gap" and finding.evidence.get("clock_skew"):
            continue  # says the clocks disagree, not where the time went
        symptoms.append(_symptom(finding, by_id[finding.span_ids[0]]))
    # The bottleneck span is "long" too: one symptom per span says it once.
    bottlenecks = {s.span_id for s in symptoms if s.kind == "bottleneck"}
    symptoms = [s for s in symptoms if not (s.kind == "long_span" and s.span_id in bottlenecks)]
    # Own (self) time, not duration: a parent whose child got slow did not change itself.
    operation_ns: dict[OperationKey, int] = defaultdict(int)
    for span in by_id.values():
        operation_ns[operation_key(span)] += tree.self_ns[span.span_id]
    logs = frozenset((line.service or "", (line.level or "").lower(), mask_message(message_of(line.line)))
                     for line in correlation.logs)
    return Digest(correlation.trace_id, slow, value, tree.end_ns - tree.start_ns, tuple(symptoms), dict(operation_ns), logs)


def _symptom(finding: Finding, span: Span) -> Symptom:
    ev = finding.evidence
    ms = 1_000_000
    if finding.kind == "bottleneck":
        measure, detail, count = round(float(ev.get("self_ms", 0)) * ms), "", 1
    elif finding.kind == "n_plus_one":
        measure, detail, count = round(float(ev.get("total_ms", 0)) * ms), str(ev.get("statement", "")), int(ev.get("count", 1))
    elif finding.kind == "gap":
        measure, detail, count = (round(float(ev.get("gap_ms", 0)) * ms) if "gap_ms" in ev else finding.impact_ns,
                                  str(ev.get("hop", "")), 1)
    elif finding.kind == "error":
        measure, detail, count = span.duration_ns, mask_message(_error_text(finding, span)), 1
    else:  # long_span
        measure, detail, count = span.duration_ns, "", 1
    return Symptom(finding.kind, operation_key(span), detail, finding.impact_ns, measure, count, span.span_id)


def _error_text(finding: Finding, span: Span) -> str:
    for exc in finding.evidence.get("exceptions") or ():
        text = ": ".join(str(x) for x in (exc.get("type"), exc.get("message")) if x)
        if text:
            return text
    if span.status_message:
        return span.status_message
    code = span.attributes.get("http.response.status_code", span.attributes.get("http.status_code"))
    return f"HTTP {code}" if code is not None else "failed"


# Masks, most specific first: an ID must not be read as a run of numbers.
_MASKS = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{12,}\b"), "<id>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d+\.\d+\.\d+\.\d+(?::\d+)?\b"), "<ip>"),
    (re.compile(r"(?<![A-Za-z0-9_.])-?\d+(?:\.\d+)?"), "<n>"),
)
_SPACE = re.compile(r"\s+")
_LOGFMT_MSG = re.compile(r'(?:^|\s)(?:msg|message)=(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def message_of(line: str) -> str:
    """The message of a log line: the `msg`/`message` field of JSON or logfmt, else the line."""
    text = line.strip()
    if text.startswith("{"):
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            for key in ("msg", "message", "body", "event"):
                if isinstance(body.get(key), str):
                    return str(body[key])
    found = _LOGFMT_MSG.search(text)
    if found:
        return found.group(1) if found.group(1) is not None else found.group(2)
    return text


def mask_message(text: str, limit: int = 200) -> str:
    """Numbers, IDs, times and addresses masked, so one message shape counts once."""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ the aggregate


@dataclass(frozen=True, slots=True)
class Suspect:
    kind: str
    operation: OperationKey
    detail: str
    slow_traces: tuple[str, ...]  # the evidence: slow traces showing it, most time explained first
    slow_total: int  # slow traces digested
    normal_traces: tuple[str, ...]  # baseline traces showing it too
    normal_total: int
    explained_ns: int  # Σ critical-path time it explains over the slow traces: the ranking
    median_measure_ns: int  # over the slow traces showing it
    median_share: float  # median share of each slow trace's critical path (= its duration) it explains
    median_count: int  # n_plus_one: calls per loop


def suspects(digests: Sequence[Digest]) -> list[Suspect]:
    """Symptoms of the slow traces grouped by kind, operation (and detail), ranked by the time they explain."""
    slow = [d for d in digests if d.slow]
    normal = [d for d in digests if not d.slow]
    Key = tuple[str, OperationKey, str]
    found: dict[Key, list[tuple[Digest, Symptom]]] = defaultdict(list)
    for d in slow:
        seen: set[Key] = set()
        # One entry per trace and key: the symptom that explains the most (two long spans of one
        # operation in one trace are one trace of evidence).
        for symptom in sorted(d.symptoms, key=lambda s: -s.impact_ns):
            key = (symptom.kind, symptom.operation, symptom.detail)
            if key not in seen:
                seen.add(key)
                found[key].append((d, symptom))
    in_normal: dict[Key, list[str]] = defaultdict(list)
    for d in normal:
        for key in {(s.kind, s.operation, s.detail) for s in d.symptoms}:
            in_normal[key].append(d.trace_id)
    out = []
    for (kind, operation, detail), hits in found.items():
        hits.sort(key=lambda hit: (-hit[1].impact_ns, hit[0].trace_id))
        out.append(Suspect(
            kind, operation, detail,
            tuple(d.trace_id for d, _s in hits), len(slow),
            tuple(sorted(in_normal.get((kind, operation, detail), ()))), len(normal),
            sum(s.impact_ns for _d, s in hits),
            round(statistics.median(s.measure_ns for _d, s in hits)),
            statistics.median(s.impact_ns / d.duration_ns if d.duration_ns > 0 else 0.0 for d, s in hits),
            round(statistics.median(s.count for _d, s in hits)),
        ))
    # Errors explain little time but matter: among equal time, more traces first.
    out.sort(key=lambda s: (-s.explained_ns, -len(s.slow_traces), s.kind, s.operation, s.detail))
    return out


@dataclass(frozen=True, slots=True)
class Change:
    operation: OperationKey
    slow_median_ns: int | None  # None: the operation is absent from the slow traces
    normal_median_ns: int | None  # None: absent from the baseline (new in slow requests)
    slow_traces: int  # how many slow traces have it
    normal_traces: int


@dataclass(frozen=True, slots=True)
class Comparison:
    slow_count: int
    normal_count: int
    enough: bool  # False: too few traces on a side to say anything
    changed: tuple[Change, ...]  # differ most first (slow minus normal median)
    only_in_slow: tuple[Change, ...]  # in at least half of the slow traces, in none of the baseline
    unchanged: int  # operations seen on both sides whose time did not change


def compare(digests: Sequence[Digest], min_per_side: int = MIN_PER_SIDE) -> Comparison:
    """Per operation: median own time in slow vs baseline traces, the biggest differences first."""
    slow = [d for d in digests if d.slow]
    normal = [d for d in digests if not d.slow]
    if len(slow) < min_per_side or len(normal) < min_per_side:
        return Comparison(len(slow), len(normal), False, (), (), 0)
    ops = {op for d in digests for op in d.operation_ns}
    typical_slow = statistics.median(d.duration_ns for d in slow)
    changed, only_slow, unchanged = [], [], 0
    for op in ops:
        slow_values = [d.operation_ns[op] for d in slow if op in d.operation_ns]
        normal_values = [d.operation_ns[op] for d in normal if op in d.operation_ns]
        slow_median = round(statistics.median(slow_values)) if slow_values else None
        normal_median = round(statistics.median(normal_values)) if normal_values else None
        change = Change(op, slow_median, normal_median, len(slow_values), len(normal_values))
        if slow_median is not None and normal_median is None:
            if len(slow_values) * 2 >= len(slow):
                only_slow.append(change)
            continue
        if slow_median is None or normal_median is None:
            continue
        difference = slow_median - normal_median
        # Changed: clearly longer (or shorter) than usual, and by a share of the slow request that matters.
        ratio = (slow_median + 1) / (normal_median + 1)
        if (ratio >= _UNCHANGED_RATIO or ratio <= 1 / _UNCHANGED_RATIO) and abs(difference) >= 0.05 * typical_slow:
            changed.append(change)
        else:
            unchanged += 1
    changed.sort(key=lambda c: (-abs((c.slow_median_ns or 0) - (c.normal_median_ns or 0)), c.operation))
    only_slow.sort(key=lambda c: (-(c.slow_median_ns or 0), c.operation))
    return Comparison(len(slow), len(normal), True, tuple(changed), tuple(only_slow), unchanged)


@dataclass(frozen=True, slots=True)
class LogPattern:
    service: str
    level: str
    message: str  # masked
    slow_traces: tuple[str, ...]
    slow_total: int
    normal_traces: tuple[str, ...]
    normal_total: int


def log_patterns(digests: Sequence[Digest], share: float = 0.5) -> list[LogPattern]:
    """Masked log messages present in at least `share` of the slow traces (≥ 2), most widespread first."""
    slow = [d for d in digests if d.slow]
    normal = [d for d in digests if not d.slow]
    in_slow: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for d in slow:
        for pattern in d.logs:
            in_slow[pattern].append(d.trace_id)
    normal_ids: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for d in normal:
        for pattern in d.logs:
            normal_ids[pattern].append(d.trace_id)
    floor = max(2, math.ceil(share * len(slow)))
    out = [LogPattern(service, level, message, tuple(sorted(ids)), len(slow),
                      tuple(sorted(normal_ids.get((service, level, message), ()))), len(normal))
           for (service, level, message), ids in in_slow.items() if len(ids) >= floor]
    # Lines the baseline lacks say the most about slowness: those first, then the most widespread.
    out.sort(key=lambda p: (-(len(p.slow_traces) / max(1, p.slow_total) - len(p.normal_traces) / max(1, p.normal_total)),
                            -len(p.slow_traces), p.service, p.message))
    return out
