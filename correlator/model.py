"""The shared vocabulary: what the sources produce and the join and analysis consume.

All times are integer nanoseconds since the Unix epoch (`*_ns`): the backends speak ns
strings (OTLP, Loki), µs integers (Jaeger UI model) and float seconds (Prometheus); the
sources convert at the edge so nothing downstream has to remember which is which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from correlator.skew import ClockEstimate

__all__ = [
    "Confidence",
    "Correlation",
    "Exemplar",
    "Finding",
    "LogLine",
    "Match",
    "Placement",
    "Severity",
    "SourceReport",
    "SourceStatus",
    "Span",
    "SpanEvent",
    "SpanLink",
    "Trace",
    "UntracedReport",
    "Window",
]


class Match(StrEnum):
    """Which join rule placed a log line or exemplar (DESIGN.md "Matching rules")."""

    SPAN_ID = "span_id"
    TIME = "time"
    TRACE = "trace"
    INFERRED = "inferred"  # a line with no trace ID at all, attached by service and time (with a confidence)


class Confidence(StrEnum):
    """How sure an inferred attachment is (docs/imperfect-data.md "Logs without a trace ID")."""

    HIGH = "high"  # one span of the service open then, and no other trace of the service overlapping
    MEDIUM = "medium"  # one span of the service open then; other traces unknown
    LOW = "low"  # several candidates (here or in other traces): placed on their common ancestor


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class SourceStatus(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    ERROR = "error"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad_response"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Window:
    """A closed time range, ns since the epoch."""

    start_ns: int
    end_ns: int

    def widened(self, margin_ns: int) -> Window:
        return Window(self.start_ns - margin_ns, self.end_ns + margin_ns)


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanLink:
    trace_id: str
    span_id: str


@dataclass(frozen=True, slots=True)
class Span:
    span_id: str  # 16 lower-case hex
    parent_span_id: str | None
    service: str
    operation: str
    start_ns: int
    end_ns: int
    kind: str = "unspecified"  # server|client|internal|producer|consumer|unspecified
    status: str = "unset"  # ok|error|unset (OTel status; `error=true` tags map to error)
    status_message: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


_START: Callable[[Span], int] = attrgetter("start_ns")
_END: Callable[[Span], int] = attrgetter("end_ns")


@dataclass(frozen=True, slots=True)
class Trace:
    trace_id: str  # 32 lower-case hex
    spans: tuple[Span, ...]
    warnings: tuple[str, ...] = ()

    # `map` over an attrgetter, not a generator: read per correlation (window, untraced scope, cache), 100k spans each.
    @property
    def start_ns(self) -> int:
        return min(map(_START, self.spans))

    @property
    def end_ns(self) -> int:
        return max(map(_END, self.spans))


@dataclass(frozen=True, slots=True)
class LogLine:
    id: str  # stable across the two Loki lookups, so merging de-duplicates
    timestamp_ns: int
    line: str
    service: str | None = None
    level: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # index (stream) labels
    metadata: Mapping[str, str] = field(default_factory=dict)  # structured metadata + parsed
    span_id: str | None = None  # a span ID the line itself carries, if any


@dataclass(frozen=True, slots=True)
class Exemplar:
    id: str
    metric: str
    series: Mapping[str, str]
    labels: Mapping[str, str]
    value: float
    timestamp_ns: int
    trace_id: str
    span_id: str | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the join put one log line or exemplar."""

    span_id: str | None
    match: Match
    confidence: Confidence | None = None  # inferred placements only


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # bottleneck|n_plus_one|gap|error|fan_out|long_span|malformed
    severity: Severity
    message: str
    span_ids: tuple[str, ...]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    impact_ns: int = 0  # time on the critical path this finding explains; sort key


@dataclass(frozen=True, slots=True)
class SourceReport:
    status: SourceStatus
    ms: float
    items: int = 0
    truncated: bool = False
    error: str | None = None
    cut: str | None = None  # when a limit cut the answer: which part was dropped, in a sentence


@dataclass(frozen=True, slots=True)
class UntracedReport:
    """How the lookup of lines without a trace ID went (`summary.untraced`)."""

    status: str  # ok | error | timeout | off | late (with a hint: not there when the main lookups were, plus the wait)
    fetched: int = 0  # lines of the trace's services in its window that carry no trace ID
    truncated: bool = False  # `join.untraced_max_lines` cut the lookup
    # jaeger | unavailable | off | late: whether other traces of each service were asked for (late: with a hint,
    # not asked because they would answer after the main lookups, or not answered by then)
    overlap_check: str = "off"
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Correlation:
    trace_id: str
    window: Window
    trace: Trace | None
    logs: tuple[LogLine, ...]
    log_placements: tuple[Placement, ...]  # parallel to `logs`
    exemplars: tuple[Exemplar, ...]
    exemplar_placements: tuple[Placement, ...]  # parallel to `exemplars`
    critical_path: tuple[str, ...]
    findings: tuple[Finding, ...]
    sources: Mapping[str, SourceReport]
    notes: tuple[str, ...] = ()  # what the reader must know about the answer's certainty (shown in `warnings`)
    # Lines that carry no trace ID, attached by service and time: never the trace's own lines.
    inferred_logs: tuple[LogLine, ...] = ()
    inferred_placements: tuple[Placement, ...] = ()  # parallel to `inferred_logs`
    untraced: UntracedReport | None = None
    clock: ClockEstimate | None = None  # per service pair, how far the clocks disagree (`summary.clock_skew`)
