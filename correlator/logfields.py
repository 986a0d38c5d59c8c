"""Pure: find the trace ID, span ID and level a log line carries, wherever it carries them.

Order of evidence: structured metadata (OTLP logs), then the body parsed as JSON (top-level
fields, then configured JSONPaths for nested bodies such as `{"otel": {"trace_id": …}}`),
then `key=value` / `"key": "value"` pairs anywhere in text or logfmt. The same field names
feed the Grafana derived-field regex, so a line that links in Grafana correlates here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from jsonpath_ng import parse as jsonpath_parse

from correlator.config import LokiSettings
from correlator.errors import InvalidTraceId
from correlator.ids import normalise_span_id, parse_trace_id

__all__ = ["TraceContext", "derived_field_regex", "extract_trace_context", "line_carries"]


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str | None
    span_id: str | None
    level: str | None


@functools.lru_cache(maxsize=32)
def _jsonpaths(exprs: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(jsonpath_parse(e) for e in exprs)


@functools.lru_cache(maxsize=32)
def _pair_regex(fields: tuple[str, ...], value: str) -> re.Pattern[str]:
    names = "|".join(re.escape(f) for f in sorted(fields, key=len, reverse=True))
    return re.compile(rf"""(?<![\w.])["']?(?:{names})["']?\s*[:=]\s*["']?({value})""")


def _trace(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        return parse_trace_id(raw).hex
    except InvalidTraceId:
        return None


def _first(mapping: Mapping[str, Any], fields: Sequence[str], convert: Any) -> Any:
    for field in fields:
        if field in mapping:
            found = convert(mapping[field])
            if found:
                return found
    return None


def _level(raw: object) -> str | None:
    return raw.strip().lower() if isinstance(raw, str) and raw.strip() else None


def extract_trace_context(line: str, settings: LokiSettings, metadata: Mapping[str, str] | None = None) -> TraceContext:
    meta = metadata or {}
    trace_id = _first(meta, settings.trace_id_fields, _trace)
    span_id = _first(meta, settings.span_id_fields, normalise_span_id)
    level = None
    stripped = line.lstrip()
    if stripped.startswith("{"):
        try:
            body = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            trace_id = trace_id or _first(body, settings.trace_id_fields, _trace)
            span_id = span_id or _first(body, settings.span_id_fields, normalise_span_id)
            level = _first(body, settings.level_fields, _level)
            for path in _jsonpaths(settings.trace_id_jsonpaths) if trace_id is None else ():
                trace_id = next((t for m in path.find(body) if (t := _trace(m.value))), None)
                if trace_id:
                    break
            for path in _jsonpaths(settings.span_id_jsonpaths) if span_id is None else ():
                span_id = next((s for m in path.find(body) if (s := normalise_span_id(m.value))), None)
                if span_id:
                    break
    if trace_id is None:
        match = _pair_regex(settings.trace_id_fields, "[0-9a-fA-F]{1,32}").search(line)
        trace_id = _trace(match.group(1)) if match else None
    if span_id is None:
        match = _pair_regex(settings.span_id_fields, "[0-9a-fA-F]{1,16}").search(line)
        span_id = normalise_span_id(match.group(1)) if match else None
    if level is None:
        match = _pair_regex(settings.level_fields, "[A-Za-z]+").search(line)
        level = _level(match.group(1)) if match else _first(meta, settings.level_fields, _level)
    return TraceContext(trace_id, span_id, level)


def line_carries(line: str, spellings: Sequence[str]) -> bool:
    """True when a spelling stands in the line as a whole hex token (not inside a longer one)."""
    lowered = line.lower()
    for spelling in spellings:
        start = lowered.find(spelling)
        while start != -1:
            before = lowered[start - 1] if start else " "
            end = start + len(spelling)
            after = lowered[end] if end < len(lowered) else " "
            if before not in "0123456789abcdef" and after not in "0123456789abcdef":
                return True
            start = lowered.find(spelling, start + 1)
    return False


def derived_field_regex(settings: LokiSettings) -> str:
    """One capture group, in the subset JavaScript (Grafana, in the browser) and Python share."""
    names = "|".join(re.escape(f) for f in sorted(settings.trace_id_fields, key=len, reverse=True))
    return rf"""(?:{names})["']?\s*[:=]\s*["']?([0-9a-fA-F]{{16,32}})"""
