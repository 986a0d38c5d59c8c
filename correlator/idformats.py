"""Pure: trace and span IDs in the shapes popular stacks write by default, with no configuration.

The configured field names (`loki.trace_id_fields` …) cover `name=value` pairs; these are the
shapes that are not such a pair, or whose names no one configures:

- ECS JSON (Elastic's ecs-logging): flat dotted keys `"trace.id"` / `"span.id"` (nested ones are
  the default JSONPaths);
- Spring Boot 3.0/3.1 + Micrometer Tracing (and Sleuth): `[app,traceId,spanId]` (`,exportable]`);
  Spring Boot ≥ 3.2's correlation pattern `[traceId-spanId]`;
- Python's OpenTelemetry logging instrumentation: `otelTraceID=… otelSpanID=…`;
- W3C `traceparent` values `00-<trace>-<span>-<flags>` (access logs, logged headers);
- Google Cloud structured logging: `logging.googleapis.com/trace` = `projects/<p>/traces/<id>`,
  `logging.googleapis.com/spanId`;
- Datadog `dd.trace_id` / `dd.span_id`: **decimal**, the lower 64 bits of the trace ID only. Read
  as decimal, never as hex (the hex reading is a different, wrong ID), and flagged `lower64_only`.

Every trace-ID shape here is also one alternative of the Grafana derived-field regex
(`TEXT_TRACE_PREFIXES`), so a line that correlates here links in Grafana — except Datadog's
decimal IDs, which neither Jaeger's link nor the correlator's path can take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from correlator.errors import InvalidTraceId
from correlator.ids import normalise_span_id, parse_trace_id

__all__ = ["TEXT_TRACE_PREFIXES", "WellKnown", "from_json", "from_text", "low64_trace_hex"]

_HEX = "[0-9a-fA-F]"
_NOT_WORD = "[^0-9A-Za-z_.]"
# Keys whose value is a hex trace / span ID (or GCP's resource name around one).
_TRACE_KEYS = ("trace.id", "otelTraceID", "logging.googleapis.com/trace")
_SPAN_KEYS = ("span.id", "otelSpanID", "logging.googleapis.com/spanId")
_GCP_TRACE = re.compile(rf"projects/[^/\s\"'\\]+/traces/({_HEX}{{16,32}})")
_UINT64_MAX = (1 << 64) - 1


def _escape(name: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$/])", r"\\\1", name)


_KEYS_RE = "|".join(_escape(k) for k in _TRACE_KEYS)
# Each a non-capturing prefix that ends right where the trace ID starts (one shared capture group in the
# derived field: Grafana takes group 1). Lookaheads pin the whole shape so lookalikes do not match.
TEXT_TRACE_PREFIXES: tuple[str, ...] = (
    # "trace.id": "…", otelTraceID=…, "logging.googleapis.com/trace":"projects/p/traces/…"
    rf"""(?:^|{_NOT_WORD})(?:{_KEYS_RE})(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?(?:projects/[^/\s"'\\]+/traces/)?""",
    # ECS nested: "trace": {"id": "…"} (the JSON parse reads it through a JSONPath; Grafana needs it in text)
    r'(?:^|[^0-9A-Za-z_.])\\?"trace\\?"\s*:\s*\{\s*\\?"id\\?"\s*:\s*\\?"',
    # Spring Boot 3.0/3.1, Sleuth: [app,trace,span] / [app,trace,span,true]
    rf"\[[^\],\s\[]*,(?={_HEX}{{16,32}},{_HEX}{{16}}[,\]])",
    # Spring Boot ≥ 3.2: [trace-span]
    rf"\[(?={_HEX}{{32}}-{_HEX}{{16}}\])",
    # W3C traceparent: 00-trace-span-flags
    rf"(?:^|[^0-9A-Za-z_.-])00-(?={_HEX}{{32}}-{_HEX}{{16}}-{_HEX}{{2}}(?![0-9A-Za-z_]))",
)
_TRACE_TEXT = re.compile(rf"(?:{'|'.join(TEXT_TRACE_PREFIXES)})({_HEX}{{16,32}})(?![0-9A-Za-z_])")
_SPAN_TEXT = re.compile(
    rf"""(?:(?:^|{_NOT_WORD})(?:{'|'.join(_escape(k) for k in _SPAN_KEYS)})(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?({_HEX}{{1,16}})"""
    rf"|\[[^\],\s\[]*,{_HEX}{{16,32}},({_HEX}{{16}})[,\]]"
    rf"|\[{_HEX}{{32}}-({_HEX}{{16}})\]"
    rf"|(?:^|[^0-9A-Za-z_.-])00-{_HEX}{{32}}-({_HEX}{{16}})-{_HEX}{{2}})(?![0-9A-Za-z_])"
)
# Datadog's log injection: `dd.trace_id=123 dd.span_id=456` (text), `"dd.trace_id":"123"` (JSON keys in text).
_DD_TEXT = re.compile(
    r"""(?:^|[^0-9A-Za-z_])dd\.(trace_id|span_id)(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?([0-9]{1,20})(?![0-9A-Za-z_])"""
)
# Cheap guards: a line without any of these cannot match a pattern (the Loki parse runs per line).
_TRACE_HINTS = ("trace.id", "{", "otelTraceID", "googleapis", "[", "00-")
_SPAN_HINTS = ("span.id", "otelSpanID", "spanId", "[", "00-")


@dataclass(frozen=True, slots=True)
class WellKnown:
    trace_id: str | None = None  # 32 lower-case hex
    span_id: str | None = None  # 16 lower-case hex
    lower64_only: bool = False  # the trace ID's upper 64 bits are unknown (Datadog decimal)


def low64_trace_hex(value: int) -> str:
    """The 32-hex form of a trace ID known only by its lower 64 bits (upper half unknown → zero)."""
    return f"{value:032x}"


def _decimal(raw: object) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 20:
        value = int(raw.strip())
    else:
        return None
    return value if 0 < value <= _UINT64_MAX else None


def _hex_trace(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    gcp = _GCP_TRACE.fullmatch(raw.strip())
    try:
        return parse_trace_id(gcp.group(1) if gcp else raw).hex
    except InvalidTraceId:
        return None


def _datadog(trace_raw: object, span_raw: object) -> WellKnown:
    trace_value, span_value = _decimal(trace_raw), _decimal(span_raw)
    return WellKnown(
        low64_trace_hex(trace_value) if trace_value is not None else None,
        f"{span_value:016x}" if span_value is not None else None,
        trace_value is not None,
    )


def from_json(body: Mapping[str, Any], want_trace: bool = True) -> WellKnown:
    """The well-known keys of a JSON log record (flat and, for Datadog, nested under `dd`)."""
    trace_id = next((t for k in _TRACE_KEYS if (t := _hex_trace(body.get(k)))), None) if want_trace else None
    span_id = next((s for k in _SPAN_KEYS if (s := normalise_span_id(body.get(k)))), None)
    if (want_trace and trace_id is None) or span_id is None:
        nested = body.get("dd")
        dd = nested if isinstance(nested, dict) else {}
        datadog = _datadog(body.get("dd.trace_id", dd.get("trace_id")), body.get("dd.span_id", dd.get("span_id")))
        if trace_id is None and want_trace and datadog.trace_id is not None:
            return WellKnown(datadog.trace_id, span_id or datadog.span_id, True)
        span_id = span_id or datadog.span_id
    return WellKnown(trace_id, span_id)


def from_text(line: str, want_trace: bool = True) -> WellKnown:
    """The well-known shapes anywhere in a text / logfmt line (or JSON read as text)."""
    trace_id = span_id = None
    if want_trace and any(h in line for h in _TRACE_HINTS):
        for match in _TRACE_TEXT.finditer(line):
            trace_id = _hex_trace(match.group(1))
            if trace_id:
                break
    if any(h in line for h in _SPAN_HINTS):
        for match in _SPAN_TEXT.finditer(line):
            span_id = normalise_span_id(next(g for g in match.groups() if g is not None))
            if span_id:
                break
    if ((trace_id is None and want_trace) or span_id is None) and "dd." in line:
        found: dict[str, str] = {}
        for m in _DD_TEXT.finditer(line):
            found.setdefault(m.group(1), m.group(2))  # the first of each, like every other field
        datadog = _datadog(found.get("trace_id"), found.get("span_id"))
        if trace_id is None and want_trace and datadog.trace_id is not None:
            return WellKnown(datadog.trace_id, span_id or datadog.span_id, True)
        span_id = span_id or datadog.span_id
    return WellKnown(trace_id, span_id)
