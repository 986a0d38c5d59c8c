"""Pure: the time and the service a log line names itself, for plain log files (no Loki to stamp them).

Time, first found wins:
1. JSON: `timestamp`, `@timestamp`, `time`, `ts`, `asctime`, `datetime`, `date`, `t` — an RFC 3339 /
   ISO 8601 string, a Unix number (s/ms/µs/ns by magnitude, as everywhere else), or GCP's
   `{"seconds": …, "nanos": …}`;
2. logfmt: `ts=`, `time=`, `timestamp=`, `t=`;
3. text: an ISO 8601 time near the start (`2026-11-25T10:00:00.123Z`, `2026-11-25 10:00:00,123`),
   or the access-log form `[25/Nov/2026:10:00:00 +0000]`.
A time without a zone is read as UTC (what containers write); nanoseconds are kept.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["line_service", "line_timestamp_ns", "parse_time_ns"]

_JSON_TIME_FIELDS = ("timestamp", "@timestamp", "time", "ts", "asctime", "datetime", "date", "t")
_JSON_SERVICE_FIELDS = ("service.name", "service_name", "service", "serviceName", "dd.service", "resource.service.name",
                        "otelServiceName", "app", "application")
_ISO = re.compile(
    r"(?<![0-9])(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s?(Z|z|UTC|[+-]\d{2}:?\d{2})?(?![0-9])"
)
_CLF = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_LOGFMT_TIME = re.compile(r"""(?:^|\s)(?:ts|time|timestamp|t)=("[^"]*"|\S+)""")
_LOGFMT_SERVICE = re.compile(
    r"""(?:^|[\s\[])(?:service\.name|service_name|service|dd\.service|resource\.service\.name)=("[^"]*"|[^\s\]]+)"""
)
_SPRING_APP = re.compile(r"\[([A-Za-z0-9_.-]+),[0-9a-fA-F]{16,32},[0-9a-fA-F]{16}[,\]]")
_EARLIEST_NS = 946_684_800 * 1_000_000_000  # 2000-01-01
_LATEST_NS = 4_102_444_800 * 1_000_000_000  # 2100-01-01


def _zone_seconds(zone: str | None) -> int:
    if not zone or zone in ("Z", "z", "UTC"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def _iso(match: re.Match[str]) -> int | None:
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) < 24 and int(minute) < 60 and int(second) < 61):
        return None
    return (seconds - _zone_seconds(zone)) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def _number(value: float | int) -> int | None:
    digits = len(str(int(abs(value))))
    scale = 10**9 if digits <= 10 else 10**6 if digits <= 13 else 10**3 if digits <= 16 else 1
    ns = int(value * scale) if isinstance(value, float) and scale > 1 else int(value) * scale
    return ns if _EARLIEST_NS <= ns <= _LATEST_NS else None


def parse_time_ns(value: Any) -> int | None:
    """One time value as a log record holds it → ns since the epoch, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, Mapping) and isinstance(value.get("seconds"), (int, str)):
        try:
            return int(value["seconds"]) * 1_000_000_000 + int(value.get("nanos") or 0)
        except ValueError:
            return None
    if isinstance(value, str):
        text = value.strip().strip('"')
        if text.isdigit() or re.fullmatch(r"\d{1,12}\.\d{1,9}", text):
            return _number(float(text)) if "." in text else _number(int(text))
        match = _ISO.match(text)
        if match:
            return _iso(match)
    return None


def _json(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def line_timestamp_ns(line: str) -> int | None:
    """The time the line states, in ns since the epoch; None when it states none."""
    body = _json(line)
    if body is not None:
        for name in _JSON_TIME_FIELDS:
            if name in body:
                found = parse_time_ns(body[name])
                if found is not None:
                    return found
        return None
    pair = _LOGFMT_TIME.search(line)
    if pair:
        found = parse_time_ns(pair.group(1))
        if found is not None:
            return found
    match = _ISO.search(line, 0, 80)
    if match:
        return _iso(match)
    clf = _CLF.search(line)
    if clf:
        day, month, year, hour, minute, second, zone = clf.groups()
        if month not in _MONTHS:
            return None
        seconds = calendar.timegm((int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), 0, 0, 0))
        return (seconds - _zone_seconds(zone)) * 1_000_000_000
    return None


def line_service(line: str) -> str | None:
    """The service a line names (JSON / logfmt field, Spring's `[app,trace,span]`), else None."""
    body = _json(line)
    if body is not None:
        for name in _JSON_SERVICE_FIELDS:
            value = body.get(name)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("name"), str):  # ECS nested {"service": {"name": …}}
                return str(value["name"])
        return None
    pair = _LOGFMT_SERVICE.search(line)
    if pair:
        return pair.group(1).strip('"') or None
    spring = _SPRING_APP.search(line)
    return spring.group(1) if spring else None
