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
from correlator.sources import _native

__all__ = ["RETRY", "event_text", "mentions_retry", "offset_ms", "quotes", "wait_of"]

_MESSAGE_KEYS = ("message", "msg", "log.message", "exception.message", "error.message", "error", "body")
_MAX_TEXT = 200
_MAX_QUOTES = 8  # per finding: enough to read, few enough that the JSON stays small
_EXACT_NS = 1 << 50  # offsets below this are written in ms without `round` (`offset_ms`)

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
# Any of them, one search: most texts name no wait, and a text none of them matches is passed over at once.
_ANY_WAIT = re.compile("|".join(f"(?:{pattern.pattern})" for _what, pattern in _WAITS), re.IGNORECASE)
# A word every `_WAITS` pattern holds, in lower case, without `\b` or IGNORECASE (sre then skips to the letters that
# can start one): for ASCII text a text this does not find names no wait (5× cheaper than `_ANY_WAIT` on a log line).
# Not for other text: IGNORECASE matches `K` (Kelvin), `ſ` and `İ` to ASCII letters that `lower` does not give.
_WAIT_HINT = re.compile("lock|mutex|semaphore|rate|throttl|pool|queu|back|retr|wait|stall")
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
        if not _may_name_a_wait(text) or _ANY_WAIT.search(text) is None:
            continue
        for what, pattern in _WAITS:
            if pattern.search(text):
                return what, text
    return None


def _may_name_a_wait(text: str) -> bool:
    """False only when `_ANY_WAIT` cannot match (tests/test_wait_hint.py)."""
    return not text.isascii() or _WAIT_HINT.search(text.lower()) is not None


def mentions_retry(span: Span, logs: Sequence[LogLine] = (), start_ns: int | None = None,
                   end_ns: int | None = None) -> bool:
    """An event or log line of `span` (within [start, end] if given) calls something a retry."""
    lo = start_ns if start_ns is not None else -(1 << 62)
    hi = end_ns if end_ns is not None else 1 << 62
    if any(lo <= e.time_ns <= hi and RETRY.search(event_text(e)) for e in span.events):
        return True
    return any(lo <= ln.timestamp_ns <= hi and RETRY.search(ln.line) for ln in logs)


def quotes(spans: Sequence[Span], logs: Mapping[str, Sequence[LogLine]], origin_ns: int) -> list[dict[str, Any]]:
    """The events and log lines of a finding's spans, by time: what the application said about them. Natively when
    the extension has it (native/src/quotes.rs: the same dicts, tests/test_quotes_native.py), else `_quotes_python`."""
    native = getattr(_native.MODULE, "quotes", None)
    if native is not None:
        said: list[dict[str, Any]] | None = native(spans, logs, origin_ns, event_text, SpanEvent, _MAX_QUOTES, _MAX_TEXT)
        if said is not None:
            return said
    return _quotes_python(spans, logs, origin_ns)


def _quotes_python(spans: Sequence[Span], logs: Mapping[str, Sequence[LogLine]], origin_ns: int) -> list[dict[str, Any]]:
    """`quotes` in Python: the reference, and the way for anything the native one hands back."""
    found: list[tuple[int, Span, SpanEvent | LogLine]] = []  # (time, span, item): a quote is made only of the first ones
    append, lines_of = found.append, logs.get
    seen = 0  # items of the spans read so far, quoted or not
    for span in spans:
        events = span.events
        for event in events:
            append((event.time_ns, span, event))
        lines = lines_of(span.span_id, ())
        if lines:
            for line in _earliest(lines, _MAX_QUOTES):
                append((line.timestamp_ns, span, line))
        seen += len(events) + len(lines)
        if seen >= 4 * _MAX_QUOTES:
            break
    if len(found) > 1:
        found.sort(key=_TIME)  # stable: items of one instant stay in the spans' order
    out = []
    for at, span, item in found[:_MAX_QUOTES]:  # a quote each, inline: a few per finding, every finding of a small trace
        offset = at - origin_ns
        # `round(offset / 1e6, 3)`, without `round`'s decimal conversion where whole µs give the same float (offset_ms).
        offset_ms = (offset + 500) // 1000 / 1000 if type(offset) is int and 0 <= offset < _EXACT_NS and offset % 1000 != 500 \
            else round(offset / 1e6, 3)
        if isinstance(item, SpanEvent):
            out.append({"span_id": span.span_id, "source": "event", "offset_ms": offset_ms, "text": event_text(item)})
        else:
            out.append({"span_id": span.span_id, "source": "log", "level": item.level, "offset_ms": offset_ms,
                        "text": item.line[:_MAX_TEXT]})
    return out


def offset_ms(offset: int) -> float:
    """`round(offset / 1e6, 3)` for a ns offset, as `quotes` writes it inline: below 2^50 ns (13 days) the float
    `offset / 1e6` is within 2^-53 of its value, so it is nearer than 1e-6 to no rounding boundary but a tie's (an
    offset ending in 500 ns); away from those, `round` keeps the whole µs of the exact quotient, and both `round` and
    `q / 1000` give the float nearest q/1000. Negative offsets keep `round` (its -0.0)."""
    if type(offset) is int and 0 <= offset < _EXACT_NS and offset % 1000 != 500:
        return (offset + 500) // 1000 / 1000
    return round(offset / 1e6, 3)


def _earliest(lines: Sequence[LogLine], count: int) -> Sequence[LogLine]:
    """The `count` first of `lines` by (time, place), in their own order: only those can be among the first
    `count` quotes of a finding (a span holding thousands of lines no longer makes a quote of each)."""
    if len(lines) <= count:
        return lines
    stamps = list(map(_STAMP, lines))
    if all(map(le, stamps, islice(stamps, 1, None))):  # already by time (a sorted Loki answer)
        return lines[:count]
    return [lines[i] for i in sorted(sorted(range(len(stamps)), key=stamps.__getitem__)[:count])]
