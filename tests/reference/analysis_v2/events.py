"""Span events and log lines as evidence: their text, the waits and retries they describe.

An OTel event (or a Jaeger span log) is the application's own account of what happened
inside a span: "Waiting for lock behind 9 transactions" turns a slow query into a lock
wait, "Retrying GetDriver after error" turns a repeated call into a retry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from operator import attrgetter, itemgetter, le
from typing import Any

from correlator.model import LogLine, Span, SpanEvent

__all__ = ["RETRY", "event_text", "mentions_retry", "quotes", "wait_of"]

_MESSAGE_KEYS = ("message", "msg", "log.message", "exception.message", "error.message", "error", "body")
_MAX_TEXT = 200
_MAX_QUOTES = 8  # per finding: enough to read, few enough that the JSON stays small

# What a wait is called in event and log text → how a finding names it.
_WAITS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a lock", re.compile(r"\block(?:s|ed|ing)?\b|\bmutex\b|\bsemaphore\b", re.IGNORECASE)),
    ("a rate limit", re.compile(r"\brate[- ]?limit\w*", re.IGNORECASE)),
    ("throttling", re.compile(r"\bthrottl\w*", re.IGNORECASE)),
    ("a connection pool", re.compile(r"\bpool\w*\b", re.IGNORECASE)),
    ("a queue", re.compile(r"\bqueu\w*", re.IGNORECASE)),
    ("a backoff", re.compile(r"\bback[- ]?off\w*", re.IGNORECASE)),
    ("a retry", re.compile(r"\bretr(?:y|ies|ied|ying)\b", re.IGNORECASE)),
    ("something", re.compile(r"\bwait(?:ing|ed|s)?\b|\bblocked\b|\bstall(?:ed|ing)?\b", re.IGNORECASE)),
)
_STAMP = attrgetter("timestamp_ns")
_TIME = itemgetter(0)

RETRY = re.compile(r"\bretr(?:y|ies|ied|ying)\b|\bre-?attempt\w*\b", re.IGNORECASE)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def event_text(event: SpanEvent) -> str:
    """`Waiting for lock behind 9 transactions`, `exception: redis timeout`, or `k=v, k=v` for a bare log."""
    attrs = event.attributes
    message = next((_value(attrs[k]) for k in _MESSAGE_KEYS if k in attrs and attrs[k] not in (None, "")), None)
    if event.name and message and message != event.name:
        text = f"{event.name}: {message}"
    elif event.name or message:
        text = event.name or message or ""
    else:
        text = ", ".join(f"{k}={_value(v)}" for k, v in attrs.items())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _texts(span: Span, logs: Sequence[LogLine], lo: int, hi: int) -> Iterable[str]:
    for event in span.events:
        if lo <= event.time_ns <= hi:
            yield event_text(event)
    for line in logs:
        if lo <= line.timestamp_ns <= hi:
            yield line.line


def wait_of(span: Span, logs: Sequence[LogLine] = (), start_ns: int | None = None,
            end_ns: int | None = None) -> tuple[str, str] | None:
    """(what it waited for, the words that say so) from the span's events and log lines, or None;
    only those stamped within [start, end] when given."""
    lo = start_ns if start_ns is not None else -(1 << 62)
    hi = end_ns if end_ns is not None else 1 << 62
    for text in _texts(span, logs, lo, hi):
        for what, pattern in _WAITS:
            if pattern.search(text):
                return what, text
    return None


def mentions_retry(span: Span, logs: Sequence[LogLine] = (), start_ns: int | None = None,
                   end_ns: int | None = None) -> bool:
    """An event or log line of `span` (within [start, end] if given) calls something a retry."""
    lo = start_ns if start_ns is not None else -(1 << 62)
    hi = end_ns if end_ns is not None else 1 << 62
    if any(lo <= e.time_ns <= hi and RETRY.search(event_text(e)) for e in span.events):
        return True
    return any(lo <= ln.timestamp_ns <= hi and RETRY.search(ln.line) for ln in logs)


def quotes(spans: Sequence[Span], logs: Mapping[str, Sequence[LogLine]], origin_ns: int) -> list[dict[str, Any]]:
    """The events and log lines of a finding's spans, by time: what the application said about them."""
    found: list[tuple[int, Span, SpanEvent | LogLine]] = []  # (time, span, item): a quote is made only of the first ones
    seen = 0  # items of the spans read so far, quoted or not
    for span in spans:
        for event in span.events:
            found.append((event.time_ns, span, event))
        lines = logs.get(span.span_id, ())
        for line in _earliest(lines, _MAX_QUOTES):
            found.append((line.timestamp_ns, span, line))
        seen += len(span.events) + len(lines)
        if seen >= 4 * _MAX_QUOTES:
            break
    found.sort(key=_TIME)  # stable: items of one instant stay in the spans' order
    return [_quote(span, item, origin_ns) for _t, span, item in found[:_MAX_QUOTES]]


def _quote(span: Span, item: SpanEvent | LogLine, origin_ns: int) -> dict[str, Any]:
    if isinstance(item, SpanEvent):
        return {"span_id": span.span_id, "source": "event", "offset_ms": round((item.time_ns - origin_ns) / 1e6, 3),
                "text": event_text(item)}
    return {"span_id": span.span_id, "source": "log", "level": item.level,
            "offset_ms": round((item.timestamp_ns - origin_ns) / 1e6, 3), "text": item.line[:_MAX_TEXT]}


def _earliest(lines: Sequence[LogLine], count: int) -> Sequence[LogLine]:
    """The `count` first of `lines` by (time, place), in their own order: only those can be among the first
    `count` quotes of a finding (a span holding thousands of lines no longer makes a quote of each)."""
    if len(lines) <= count:
        return lines
    stamps = list(map(_STAMP, lines))
    if all(map(le, stamps, islice(stamps, 1, None))):  # already by time (a sorted Loki answer)
        return lines[:count]
    return [lines[i] for i in sorted(sorted(range(len(stamps)), key=stamps.__getitem__)[:count])]
