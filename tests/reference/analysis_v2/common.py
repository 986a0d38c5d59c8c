"""What every detector shares: the context it reads, and how spans and durations are printed."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from correlator.config import AnalysisSettings
from correlator.model import LogLine, Severity, Span
from correlator.spantree import SpanTree
from tests.reference.analysis_v2.identity import OperationKey, label

__all__ = ["ERROR_LEVELS", "MS", "SEVERITY_RANK", "Context", "by_start", "error_detail", "failed", "fmt_ms", "is_error",
           "is_timeout", "label", "shorten"]

ERROR_LEVELS = frozenset({"error", "err", "fatal", "critical", "crit", "emerg", "alert", "panic"})

MS = 1_000_000
_ERROR_KEYS = frozenset(("error", "http.response.status_code", "http.status_code"))
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a detector may read; computed once per analysis."""

    tree: SpanTree
    settings: AnalysisSettings
    path: tuple[str, ...]  # the critical path, root first
    held: Mapping[str, int]  # ns each critical-path span holds the path
    total_ns: int  # the trace's wall time
    span_logs: Mapping[str, Sequence[LogLine]]  # log lines the join placed on each span
    n_plus_one: tuple[tuple[str, tuple[Span, ...], str], ...]  # (parent, members, shape): two detectors use it
    keys: Mapping[str, OperationKey]  # span id → what it does (identity.operation_key)
    retries: Mapping[str, str]  # retry span id → the failed call it repeats
    failing: frozenset[str]  # span ids that failed (is_error)


def fmt_ms(ns: float) -> str:
    """`145ms`, `5.0ms`, `0.25ms`: whole ms from 10 ms up, more digits below where they matter."""
    ms = ns / MS
    if ms == 0:
        return "0ms"
    if abs(round(ms, 1)) >= 10:
        return f"{ms:.0f}ms"
    if abs(ms) >= 1:
        return f"{ms:.1f}ms"
    return f"{ms:.2f}ms"


def by_start(spans: Sequence[Span]) -> Sequence[Span]:
    """`spans` by (start, end). Siblings come by start already (the tree's order): when no two start
    together that is the order, and a pass of comparisons replaces a sort with a Python key per span."""
    if all(a.start_ns < b.start_ns for a, b in itertools.pairwise(spans)):
        return spans
    return sorted(spans, key=lambda sp: (sp.start_ns, sp.end_ns))


def shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_error(span: Span) -> bool:
    """OTel status ERROR, an OpenTracing `error=true` tag, or an HTTP 5xx answer."""
    if span.status == "error":
        return True
    if _ERROR_KEYS.isdisjoint(span.attributes):  # most spans: one C-level pass, nothing to read
        return False
    flag = span.attributes.get("error")
    if flag is True or (isinstance(flag, str) and flag.lower() == "true"):
        return True
    for key in ("http.response.status_code", "http.status_code"):
        code = span.attributes.get(key)
        if isinstance(code, bool) or code is None:
            continue
        try:
            if int(code) >= 500:
                return True
        except (TypeError, ValueError):
            continue
    return False


def failed(by_id: Mapping[str, Span]) -> frozenset[str]:
    """IDs of the spans that failed (`is_error`), its quick test inline: no call for the spans that carry
    neither an error status nor one of its keys (nearly all of them)."""
    disjoint = _ERROR_KEYS.isdisjoint
    return frozenset([sid for sid, span in by_id.items()
                      if (span.status == "error" or not disjoint(span.attributes)) and is_error(span)])


_GENERIC = re.compile(r"^(?:an? )?(?:error|exception|failed|failure)(?: (?:has )?occurred)?\.?$", re.IGNORECASE)
_TIMEOUT = re.compile(r"time[sd]?[- ]?out|deadline exceeded", re.IGNORECASE)


def error_detail(span: Span) -> str | None:
    """Why the span failed: the exception's own message before a generic status message, else the HTTP code."""
    for event in span.events:
        if event.name == "exception":
            message = event.attributes.get("exception.message")
            kind = event.attributes.get("exception.type")
            if message:
                return str(message)
            if kind:
                return str(kind)
    message = span.status_message
    if message and not _GENERIC.match(message.strip()):
        return message
    for key in ("error.message", "error.type", "exception.message"):
        value = span.attributes.get(key)
        if isinstance(value, str) and value:
            return value
    code = span.attributes.get("http.response.status_code", span.attributes.get("http.status_code"))
    if code is not None:
        return f"HTTP {code}"
    return message or None


def is_timeout(span: Span) -> bool:
    detail = error_detail(span) or ""
    return bool(_TIMEOUT.search(detail)) or any(_TIMEOUT.search(str(e.attributes.get("exception.type", "")))
                                                for e in span.events if e.name == "exception")
