"""What every detector shares: the context it reads, and how spans and durations are printed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from correlator.config import AnalysisSettings
from correlator.model import LogLine, Severity, Span
from correlator.spantree import SpanTree

__all__ = ["MS", "SEVERITY_RANK", "Context", "fmt_ms", "is_error", "label", "shorten"]

MS = 1_000_000
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a detector may read; computed once per analysis."""

    tree: SpanTree
    settings: AnalysisSettings
    path: tuple[str, ...]  # the critical path, root first
    held: Mapping[str, int]  # ns each critical-path span holds the path
    total_ns: int  # the trace's wall time
    error_logs: Mapping[str, Sequence[LogLine]]
    n_plus_one: tuple[tuple[str, tuple[Span, ...], str], ...]  # (parent, members, shape): two detectors use it


def fmt_ms(ns: int | float) -> str:
    """`145ms`, `5.0ms`, `0.25ms`: whole ms from 10 ms up, more digits below where they matter."""
    ms = ns / MS
    if ms == 0:
        return "0ms"
    if abs(round(ms, 1)) >= 10:
        return f"{ms:.0f}ms"
    if abs(ms) >= 1:
        return f"{ms:.1f}ms"
    return f"{ms:.2f}ms"


def label(span: Span) -> str:
    return f"{span.service}: {span.operation}"


def shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_error(span: Span) -> bool:
    """OTel status ERROR, an OpenTracing `error=true` tag, or an HTTP 5xx answer."""
    if span.status == "error":
        return True
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
