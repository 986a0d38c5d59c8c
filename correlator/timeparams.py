"""Pure: the `start`/`end` hints a caller (or a Grafana link) may pass, as ns since the epoch.

Grafana links carry times in whatever unit the panel had: `${__value.time}` is ms,
Loki timestamps are ns, humans type RFC 3339. Integers are read by magnitude, the same
way for every route, and absurd windows are refused before any backend is asked.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

from correlator.errors import InvalidInput
from correlator.model import Window

__all__ = ["MAX_WINDOW_NS", "parse_instant", "parse_window", "rfc3339_ns"]

MAX_WINDOW_NS = 31 * 24 * 3600 * 1_000_000_000  # Loki refuses > 721h by default
_INT = re.compile(r"[0-9]{1,19}")
_FLOAT = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
_EARLIEST_NS = 946_684_800 * 1_000_000_000  # 2000-01-01: nothing traced before that
_LATEST_NS = 4_102_444_800 * 1_000_000_000  # 2100-01-01


def parse_instant(param: str, raw: str) -> int:
    text = raw.strip()
    if _INT.fullmatch(text):
        value = int(text)
        digits = len(text.lstrip("0")) or 1
        # ≤10 digits: seconds (Loki's rule); 11-13: ms; 14-16: µs; 17-19: ns.
        scale = 10**9 if digits <= 10 else 10**6 if digits <= 13 else 10**3 if digits <= 16 else 1
        ns = value * scale
    elif _FLOAT.fullmatch(text):
        whole, frac = text.split(".")
        ns = int(whole) * 1_000_000_000 + int(frac.ljust(9, "0"))
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidInput(param, "must be RFC 3339 (2026-11-25T10:00:00Z) or a Unix time in s, ms, µs or ns") from None
        if parsed.tzinfo is None:
            raise InvalidInput(param, "an RFC 3339 time needs a zone (Z or ±hh:mm)")
        ns = int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
    if not _EARLIEST_NS <= ns <= _LATEST_NS:
        raise InvalidInput(param, "is outside 2000-2100; check its unit")
    return ns


def parse_window(start: str | None, end: str | None) -> Window | None:
    """Both, one or neither hint; a single instant becomes a zero-width window the sources widen."""
    if start is None and end is None:
        return None
    start_ns = parse_instant("start", start) if start is not None else None
    end_ns = parse_instant("end", end) if end is not None else None
    if start_ns is None:
        start_ns = end_ns
    if end_ns is None:
        end_ns = start_ns
    assert start_ns is not None and end_ns is not None
    if start_ns > end_ns:
        raise InvalidInput("start", "must not be after end")
    if end_ns - start_ns > MAX_WINDOW_NS:
        raise InvalidInput("end", "the window is longer than 31 days; narrow it")
    return Window(start_ns, end_ns)


def rfc3339_ns(ns: int) -> str:
    """RFC 3339 with nanoseconds, UTC: what Jaeger v3 and Loki accept and what we answer."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{frac:09d}Z"


@lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    # A trace's lines and events share a few seconds; formatting each second once halves render.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
