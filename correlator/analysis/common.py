"""What every detector shares: the context it reads, and how spans and durations are printed."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from correlator.analysis.identity import OperationKey, label, native_function
from correlator.config import AnalysisSettings
from correlator.construct import fast_constructor
from correlator.model import Finding, LogLine, Severity, Span
from correlator.spantree import SpanTree, columns

__all__ = ["ERROR_LEVELS", "MS", "SEVERITY_RANK", "Context", "by_start", "error_detail", "failed", "fmt_ms", "is_error",
           "is_timeout", "label", "new_finding", "shorten", "span_pass"]

ERROR_LEVELS = frozenset({"error", "err", "fatal", "critical", "crit", "emerg", "alert", "panic"})

MS = 1_000_000
_ERROR_KEYS = frozenset(("error", "http.response.status_code", "http.status_code"))
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}

# `Finding(kind, severity, message, span_ids, evidence, impact_ns)` with every field given, through its slots: a frozen
# dataclass's `__init__` sets each field by `object.__setattr__` (a dozen findings a correlation, two makings each).
new_finding = fast_constructor(Finding)


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
    # (service, operation) pairs as native/src/analysis.rs `span_groups` gives them (`span_pass`), or None: long spans
    # then groups them itself
    pairs: Sequence[tuple[str, str, int, bytes, int, int, int]] | None = None


def fmt_ms(ns: float) -> str:
    """`145ms`, `5.0ms`, `0.25ms`: whole ms from 10 ms up, more digits below where they matter."""
    ms = ns / MS
    if ms == 0:
        return "0ms"
    size = abs(ms)
    # `abs(round(ms, 1)) >= 10`, the rounding only where it can decide: from 10 up it holds, below 9.9 it cannot.
    if size >= 10 or (size >= 9.9 and abs(round(ms, 1)) >= 10):
        return f"{ms:.0f}ms"
    if size >= 1:
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


_ERROR_KEY_LIST = sorted(_ERROR_KEYS)


def span_pass(tree: SpanTree) -> tuple[frozenset[str], Sequence[tuple[str, str, int, bytes, int, int, int]] | None]:
    """`failed(tree.by_id)`, and the long-span detector's (service, operation) pairs: with the extension one native pass
    over the spans gives both (the quick test of `failed` there, `is_error` here for the few it keeps); else `failed`."""
    cols = columns(tree)
    native = native_function("span_groups")
    found = native(cols.spans, cols.durations, cols.self_ns, _ERROR_KEY_LIST) if native is not None else None
    if found is None:
        return failed(tree.by_id), None
    pairs, maybe = found
    spans, ids = cols.spans, cols.ids
    return frozenset([ids[i] for i in maybe if is_error(spans[i])]), pairs


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
