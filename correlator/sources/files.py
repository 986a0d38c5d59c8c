"""Offline: exported files → the same model the backends produce, so the join and analysis are the service's.

Formats are told apart by content, never by file name:
- trace: Jaeger UI "Download JSON" / `/api/traces` answers (`{"data": [trace…]}`, one trace object,
  or a list of them), Jaeger `/api/v3/traces` answers (`{"result": TracesData}`), OTLP JSON
  `TracesData` (`{"resourceSpans": …}`), one document or one per line (the collector's file exporter);
- logs: Loki `query_range` answers (plain and categorized), `logcli --output=jsonl` lines, and plain
  log files (text, logfmt or JSON, one entry per line; see `linetime` for the timestamps);
- exemplars: Prometheus `query_exemplars` answers.

Every file is untrusted: a shape that is not one of these raises `FileFormatError`, which names the
file, the line or JSON path, and what was expected — never a traceback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from correlator.config import LokiSettings, PrometheusSettings
from correlator.errors import InvalidInput, InvalidTraceId
from correlator.ids import TraceId, parse_trace_id
from correlator.linetime import line_service, line_timestamp_ns, parse_time_ns
from correlator.logfields import extract_trace_context
from correlator.model import Exemplar, LogLine, Trace, Window
from correlator.sources import SourceResult
from correlator.sources.jaeger import parse_otlp_trace, parse_ui_trace
from correlator.sources.loki import carries_trace, merge_duplicate, parse_streams
from correlator.sources.prometheus import parse_exemplars

__all__ = ["FileExemplarSource", "FileFormatError", "FileLogSource", "FileTraceSource", "InputFile",
           "other_traces", "read_exemplars", "read_logs", "read_trace", "trace_ids_in"]

_MAX_LISTED = 10


class FileFormatError(InvalidInput):
    """A file that is not one of the formats, or is broken: which file, where, what was expected."""

    def __init__(self, name: str, where: str, expected: str) -> None:
        super().__init__(name, f"{where}: {expected}" if where else expected)
        self.name, self.where, self.expected = name, where, expected


@dataclass(frozen=True, slots=True)
class InputFile:
    name: str  # as the user gave it ("-" is stdin)
    data: bytes


# ------------------------------------------------------------------------------ JSON, with places


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _whole(file: InputFile) -> Any:
    try:
        return orjson.loads(file.data)
    except orjson.JSONDecodeError as exc:
        cut = " (the file ends early: truncated?)" if exc.pos >= len(file.data.rstrip()) else ""
        raise FileFormatError(file.name, f"line {exc.lineno} column {exc.colno}", f"broken JSON: {exc.msg}{cut}") from None


def _lines(file: InputFile) -> Iterable[tuple[int, str]]:
    try:
        text = file.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = file.data[: exc.start].count(b"\n") + 1
        raise FileFormatError(file.name, f"line {at}", "UTF-8 text (this byte sequence is not)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _json_lines(file: InputFile) -> list[tuple[int, Any]]:
    out = []
    for number, line in _lines(file):
        try:
            out.append((number, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise FileFormatError(file.name, f"line {number} column {exc.colno}",
                                  f"one JSON document per line: {exc.msg}") from None
    return out


def _documents(file: InputFile) -> list[tuple[str, Any]]:
    """One JSON document (path prefix `$`), or one per line (`line N: $`); JSON Lines only when the whole is not JSON."""
    if not file.data.strip():
        raise FileFormatError(file.name, "", "the file is empty")
    try:
        return [("", orjson.loads(file.data))]
    except orjson.JSONDecodeError:
        pass
    lines = list(_lines(file))
    if len(lines) > 1 and _parses(lines[0][1]):  # JSON Lines: the first line is a whole document
        return [(f"line {n}: ", doc) for n, doc in _json_lines(file)]
    _whole(file)  # raises with the whole document's line and column
    raise AssertionError("unreachable")  # pragma: no cover


def _parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _need(file: InputFile, path: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        found = "nothing" if value is None else f"{_kind(value)} {_shown(value)}"
        raise FileFormatError(file.name, path, f"expected {expected}, found {found}")


def _keys(value: Any) -> str:
    if isinstance(value, dict):
        return "an object with keys " + ", ".join(list(map(str, value))[:8])
    return _kind(value)


# ------------------------------------------------------------------------------ traces

_TRACE_FORMATS = ('a Jaeger UI JSON ({"data": [trace…]}, or a trace object with "traceID" and "spans"), '
                  'a Jaeger /api/v3 answer ({"result": {"resourceSpans": …}}) or OTLP JSON TracesData ({"resourceSpans": …})')


def _is_ui_trace(value: Any) -> bool:
    return isinstance(value, dict) and "spans" in value and ("traceID" in value or "processes" in value)


def _check_ui_trace(file: InputFile, path: str, trace: dict[str, Any]) -> None:
    _need(file, f"{path}.traceID", trace.get("traceID"), str, "the trace ID (hex string)")
    _need(file, f"{path}.spans", trace.get("spans"), list, "a list of spans")
    processes = trace.get("processes")
    if processes is not None:
        _need(file, f"{path}.processes", processes, dict, "an object of processes")
    for i, span in enumerate(trace["spans"]):
        at = f"{path}.spans[{i}]"
        _need(file, at, span, dict, "a span object")
        _need(file, f"{at}.spanID", span.get("spanID"), str, "the span ID (hex string)")
        _need(file, f"{at}.startTime", span.get("startTime"), int, "the start time (integer µs since the epoch)")
        _need(file, f"{at}.duration", span.get("duration"), (int, float), "the duration (µs)")
        for field in ("tags", "logs", "references"):
            if span.get(field) is not None:
                _need(file, f"{at}.{field}", span.get(field), list, "a list")
        if isinstance(processes, dict) and span.get("processID") not in processes and "process" not in span:
            raise FileFormatError(file.name, f"{at}.processID",
                                  f"expected a key of {path}.processes, found {_shown(span.get('processID'))}")


def _check_traces_data(file: InputFile, path: str, data: dict[str, Any]) -> None:
    _need(file, f"{path}.resourceSpans", data.get("resourceSpans"), list, "a list of resource spans")
    for i, resource_spans in enumerate(data["resourceSpans"]):
        at = f"{path}.resourceSpans[{i}]"
        _need(file, at, resource_spans, dict, "a ResourceSpans object")
        scopes = resource_spans.get("scopeSpans", resource_spans.get("instrumentationLibrarySpans")) or []
        _need(file, f"{at}.scopeSpans", scopes, list, "a list of scope spans")
        for j, scope in enumerate(scopes):
            _need(file, f"{at}.scopeSpans[{j}]", scope, dict, "a ScopeSpans object")
            spans = scope.get("spans") or []
            _need(file, f"{at}.scopeSpans[{j}].spans", spans, list, "a list of spans")
            for k, span in enumerate(spans):
                sp = f"{at}.scopeSpans[{j}].spans[{k}]"
                _need(file, sp, span, dict, "a span object")
                _need(file, f"{sp}.spanId", span.get("spanId"), str, "the span ID (hex string)")
                for field in ("startTimeUnixNano", "endTimeUnixNano"):
                    value = span.get(field)  # proto3 JSON leaves zero values out: absent is allowed
                    is_ns = type(value) is int or (isinstance(value, str) and value.isdigit())
                    if value is not None and not is_ns:
                        raise FileFormatError(file.name, f"{sp}.{field}",
                                              f"expected ns since the epoch (a decimal string), found {_shown(value)}")


@dataclass(frozen=True, slots=True)
class _Candidate:
    trace_id: str
    parse: Any  # () → Trace
    span_count: int


def _otlp_candidates(file: InputFile, docs: Sequence[tuple[str, dict[str, Any]]]) -> list[_Candidate]:
    merged = {"resourceSpans": [rs for _path, doc in docs for rs in doc["resourceSpans"]]}
    counts: dict[str, int] = {}
    for rs in merged["resourceSpans"]:
        for scope in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or ():
            for span in scope.get("spans") or ():
                raw = span.get("traceId")
                try:
                    hex_id = parse_trace_id(raw).hex if isinstance(raw, str) and len(raw) == 32 else _b64_trace(raw)
                except InvalidTraceId:
                    hex_id = None
                if hex_id is None:
                    raise FileFormatError(file.name, "a span's traceId", f"expected 32 hex characters, found {_shown(raw)}")
                counts[hex_id] = counts.get(hex_id, 0) + 1
    return [_Candidate(t, (lambda t=t: parse_otlp_trace(merged, t)), n) for t, n in counts.items()]


def _b64_trace(raw: Any) -> str | None:
    import base64

    try:
        decoded = base64.b64decode(str(raw), validate=True)
    except ValueError:
        return None
    return decoded.hex() if len(decoded) == 16 and any(decoded) else None


def trace_ids_in(file: InputFile) -> list[tuple[str, int]]:
    """The traces a trace file holds: (32-hex ID, span count)."""
    return [(c.trace_id, c.span_count) for c in _trace_candidates(file)]


def _trace_candidates(file: InputFile) -> list[_Candidate]:
    docs = _documents(file)
    ui: list[tuple[str, dict[str, Any]]] = []
    otlp: list[tuple[str, dict[str, Any]]] = []
    for prefix, doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("data"), list):
            ui.extend((f"{prefix}$.data[{i}]", t) for i, t in enumerate(doc["data"]))
        elif _is_ui_trace(doc):
            ui.append((f"{prefix}$", doc))
        elif isinstance(doc, list) and doc and all(_is_ui_trace(t) for t in doc):
            ui.extend((f"{prefix}$[{i}]", t) for i, t in enumerate(doc))
        elif isinstance(doc, dict) and isinstance(doc.get("result"), dict):
            _check_traces_data(file, f"{prefix}$.result", doc["result"])
            otlp.append((f"{prefix}$.result", doc["result"]))
        elif isinstance(doc, dict) and "resourceSpans" in doc:
            _check_traces_data(file, f"{prefix}$", doc)
            otlp.append((f"{prefix}$", doc))
        elif isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            raise FileFormatError(file.name, f"{prefix}$.error",
                                  f"a trace, but this is Jaeger's error answer: {_shown(doc['error'])}")
        else:
            raise FileFormatError(file.name, f"{prefix}$", f"expected {_TRACE_FORMATS}; found {_keys(doc)}")
    if ui and otlp:
        raise FileFormatError(file.name, "", "one trace encoding per file: it mixes the Jaeger UI model and OTLP JSON")
    candidates: list[_Candidate] = []
    for path, trace in ui:
        _need(file, path, trace, dict, "a trace object")
        _check_ui_trace(file, path, trace)
        candidates.append(_Candidate(str(trace["traceID"]).lower().rjust(32, "0"), (lambda t=trace: parse_ui_trace(t)),
                                     len(trace["spans"])))
    if otlp:
        candidates.extend(_otlp_candidates(file, otlp))
    if not candidates:
        raise FileFormatError(file.name, "", "the file holds no trace (an empty list of traces)")
    return candidates


def other_traces(file: InputFile, chosen: Trace) -> list[Trace]:
    """The file's traces other than `chosen` (what else was running: evidence for untraced lines)."""
    out = []
    for candidate in _trace_candidates(file):
        if candidate.trace_id != chosen.trace_id:
            try:
                out.append(candidate.parse())
            except (ValueError, TypeError, AttributeError, KeyError):
                continue  # a broken neighbour only costs its evidence
    return out


def read_trace(file: InputFile, trace_id: TraceId | None) -> Trace:
    """The one trace of the file, or the one named by `trace_id` when it holds several."""
    candidates = _trace_candidates(file)
    if trace_id is not None:
        chosen = [c for c in candidates if c.trace_id == trace_id.hex]
        if not chosen:
            listed = ", ".join(c.trace_id for c in candidates[:_MAX_LISTED])
            raise FileFormatError(file.name, "", f"no trace {trace_id.hex} in this file; it holds {listed}")
    elif len({c.trace_id for c in candidates}) > 1:
        listed = "; ".join(f"{c.trace_id} ({c.span_count} spans)" for c in candidates[:_MAX_LISTED])
        more = f" and {len(candidates) - _MAX_LISTED} more" if len(candidates) > _MAX_LISTED else ""
        raise FileFormatError(file.name, "", f"{len(candidates)} traces in this file: pick one with --trace-id ({listed}{more})")
    else:
        chosen = candidates[:1]
    try:
        trace: Trace = chosen[0].parse()
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise FileFormatError(file.name, "", f"a trace the Jaeger parser can read ({type(exc).__name__}: {exc})") from None
    if len(chosen) > 1:  # the same trace ID in several UI-model entries: one trace, all spans
        spans = list(trace.spans)
        for extra in chosen[1:]:
            spans.extend(extra.parse().spans)
        trace = Trace(trace.trace_id, tuple(spans), trace.warnings)
    return trace


# ------------------------------------------------------------------------------ logs

_LOKI = "a Loki query_range answer of resultType streams"


def _check_streams(file: InputFile, body: dict[str, Any]) -> None:
    if body.get("status") != "success":
        raise FileFormatError(file.name, "$.status", f"{_LOKI}: expected \"success\", found {_shown(body.get('status'))}")
    data: Any = body.get("data")
    _need(file, "$.data", data, dict, f"{_LOKI}: an object")
    if data.get("resultType") != "streams":
        raise FileFormatError(file.name, "$.data.resultType",
                              f"expected \"streams\" (log lines), found {_shown(data.get('resultType'))}: "
                              "a metric query's answer holds no lines")
    _need(file, "$.data.result", data.get("result"), list, "a list of streams")
    for i, stream in enumerate(data["result"]):
        _need(file, f"$.data.result[{i}]", stream, dict, "a stream object")
        _need(file, f"$.data.result[{i}].stream", stream.get("stream"), dict, "the stream's labels (an object)")
        _need(file, f"$.data.result[{i}].values", stream.get("values"), list, "a list of [ns timestamp, line] entries")
        for j, value in enumerate(stream["values"]):
            at = f"$.data.result[{i}].values[{j}]"
            ok = (isinstance(value, list) and len(value) in (2, 3) and isinstance(value[0], str) and value[0].isdigit()
                  and isinstance(value[1], str) and (len(value) == 2 or isinstance(value[2], dict)))
            if not ok:
                raise FileFormatError(file.name, at,
                                      f"expected [\"<ns timestamp>\", \"<line>\"(, {{metadata}})], found {_shown(value)}")


def _is_loki_answer(doc: Any) -> bool:
    """Loki's envelope: status success/error with data (or an error), or data with a resultType."""
    if not isinstance(doc, dict):
        return False
    data = doc.get("data")
    return (isinstance(data, dict) and "resultType" in data) or (
        doc.get("status") in ("success", "error") and ("data" in doc or "error" in doc))


def _is_logcli(doc: Any) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("line"), str) and "timestamp" in doc
            and set(doc) <= {"labels", "line", "timestamp"})


def _logcli_line(file: InputFile, number: int, doc: dict[str, Any], service: str | None, settings: LokiSettings) -> LogLine:
    ts = parse_time_ns(doc["timestamp"]) if isinstance(doc["timestamp"], str) else None
    if ts is None:
        raise FileFormatError(file.name, f"line {number}: $.timestamp",
                              f"expected an RFC 3339 time (logcli --output=jsonl), found {_shown(doc['timestamp'])}")
    labels = doc.get("labels") or {}
    _need(file, f"line {number}: $.labels", labels, dict, "the stream's labels (an object)")
    labels = {str(k): str(v) for k, v in labels.items()}
    return _log_line(ts, doc["line"], service or labels.get(settings.service_label), labels, {}, settings)


def _log_line(ts: int, text: str, service: str | None, labels: dict[str, str], metadata: dict[str, str],
              settings: LokiSettings) -> LogLine:
    context = extract_trace_context(text, settings, metadata, with_trace_id=False)
    digest = hashlib.blake2b(f"{ts}|{service}|{text}".encode(), digest_size=8).hexdigest()
    return LogLine(id=f"log-{digest}", timestamp_ns=ts, line=text, service=service, level=context.level, labels=labels,
                   metadata=metadata, span_id=context.span_id)


def _plain(file: InputFile, service: str | None, settings: LokiSettings) -> list[LogLine]:
    """One entry per line; a line without a time of its own continues the entry above (a stack trace)."""
    entries: list[tuple[int, str, str | None]] = []
    for number, text in _lines(file):
        ts = line_timestamp_ns(text)
        if ts is None:
            if not entries:
                raise FileFormatError(file.name, f"line {number}",
                                      "expected a log entry with a time (RFC 3339 / ISO 8601 at the start, a JSON "
                                      "timestamp/time/ts/@timestamp field, or logfmt ts=/time=), found "
                                      f"{_shown(text)}")
            prev_ts, prev_text, prev_service = entries[-1]
            entries[-1] = (prev_ts, f"{prev_text}\n{text}", prev_service)
            continue
        entries.append((ts, text, service or line_service(text)))
    return [_log_line(ts, text, svc, {settings.service_label: svc} if svc else {}, {}, settings) for ts, text, svc in entries]


def read_logs(file: InputFile, service: str | None, settings: LokiSettings) -> list[LogLine]:
    """Every entry of a log file, whatever the format; the trace's are picked by `FileLogSource`."""
    if not file.data.strip():
        raise FileFormatError(file.name, "", "the file is empty")
    try:
        whole = orjson.loads(file.data)
    except orjson.JSONDecodeError:
        whole = None
        first = next(iter(_lines(file)), (0, ""))[1].strip()
        # A Loki answer (pretty-printed or on one line) that is cut or broken: say where. A JSON log file
        # has a whole document on its first line, so it is not mistaken for one.
        if (first.startswith('{"status"') or first == "{") and not _parses(first):
            _whole(file)
    if _is_loki_answer(whole):
        _check_streams(file, whole)
        lines, _entries = parse_streams(whole, settings)
        if service:
            lines = [_relabel(line, service) for line in lines]
        return lines
    if isinstance(whole, dict) and _is_logcli(whole):
        return [_logcli_line(file, 1, whole, service, settings)]
    if whole is not None and not isinstance(whole, dict):
        raise FileFormatError(file.name, "$",
                              f"expected {_LOKI}, logcli --output=jsonl lines or a log file; found {_keys(whole)}")
    first_doc = _first_json_line(file)
    if _is_logcli(first_doc):
        out = []
        for number, doc in _json_lines(file):
            if not _is_logcli(doc):
                raise FileFormatError(file.name, f"line {number}", 'expected a logcli line {"labels", "line", "timestamp"}, '
                                      f"found {_keys(doc)}")
            out.append(_logcli_line(file, number, doc, service, settings))
        return out
    return _plain(file, service, settings)


def _first_json_line(file: InputFile) -> Any:
    for _number, line in _lines(file):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
    return None


def _relabel(line: LogLine, service: str) -> LogLine:
    return LogLine(line.id, line.timestamp_ns, line.line, service, line.level, line.labels, line.metadata, line.span_id)


# ------------------------------------------------------------------------------ exemplars


def read_exemplars(file: InputFile, settings: PrometheusSettings) -> list[Exemplar]:
    body = _whole(file)
    what = "a Prometheus query_exemplars answer"
    if not isinstance(body, dict) or body.get("status") != "success":
        status = _shown(body.get("status")) if isinstance(body, dict) else _keys(body)
        raise FileFormatError(file.name, "$.status", f"{what}: expected \"success\", found {status}")
    data = body.get("data") or []
    _need(file, "$.data", data, list, f"{what}: a list of series")
    for i, series in enumerate(data):
        _need(file, f"$.data[{i}]", series, dict, "a series object")
        _need(file, f"$.data[{i}].seriesLabels", series.get("seriesLabels"), dict, "the series' labels")
        _need(file, f"$.data[{i}].exemplars", series.get("exemplars") or [], list, "a list of exemplars")
        for j, ex in enumerate(series.get("exemplars") or ()):
            _need(file, f"$.data[{i}].exemplars[{j}]", ex, dict, "an exemplar object")
            _need(file, f"$.data[{i}].exemplars[{j}].timestamp", ex.get("timestamp"), (int, float), "a time in seconds")
    try:
        found, _skipped = parse_exemplars(body, settings.trace_id_labels, settings.span_id_labels)
    except (ValueError, TypeError, AttributeError) as exc:
        raise FileFormatError(file.name, "$.data", f"{what} ({exc})") from None
    return found


# ------------------------------------------------------------------------------ the sources


class FileTraceSource:
    """The trace read from a file; the Correlator's `TraceSource`.

    `others`: the file's other traces, which say which other requests of a service overlapped
    (None when the file holds only this one: then nobody knows).
    """

    def __init__(self, trace: Trace, others: Sequence[Trace] | None = None) -> None:
        self.trace = trace
        self.others = others

    async def other_traces(self, service: str, window: Window, exclude_hex: str, depth: int,
                           tenant: str | None = None) -> list[tuple[int, int]] | None:
        if not self.others:
            return None
        return [(s.start_ns, s.end_ns) for t in self.others if t.trace_id != exclude_hex for s in t.spans
                if s.service == service]

    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None) -> SourceResult[Trace | None]:
        if trace_id.hex != self.trace.trace_id:
            return SourceResult(None, not_found=True)
        return SourceResult(self.trace)


class FileLogSource:
    """Lines of log files; picks the trace's lines exactly as the Loki lookups and their check do."""

    def __init__(self, lines: Sequence[LogLine], settings: LokiSettings) -> None:
        self.lines = lines
        self.settings = settings

    async def fetch(self, trace_id: TraceId, window: Window, services: Sequence[str] | None,
                    tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
        wide = window.widened(round(self.settings.margin_seconds * 1e9))
        merged: dict[str, LogLine] = {}
        for line in self.lines:
            if wide.start_ns <= line.timestamp_ns <= wide.end_ns and carries_trace(line, trace_id, self.settings):
                merged[line.id] = merge_duplicate(merged[line.id], line) if line.id in merged else line
        ordered = tuple(sorted(merged.values(), key=lambda line: (line.timestamp_ns, line.id)))
        return SourceResult(ordered, not_found=False)

    async def fetch_untraced(self, window: Window, services: Sequence[str], limit: int,
                             tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
        """The files' lines of `services` in `window` that carry no trace ID, oldest first, at most `limit`."""
        wanted = set(services)
        found = sorted((line for line in self.lines
                        if line.service in wanted and window.start_ns <= line.timestamp_ns <= window.end_ns
                        and not any(line.metadata.get(name) for name in self.settings.trace_id_fields)
                        and extract_trace_context(line.line, self.settings).trace_id is None),
                       key=lambda line: (line.timestamp_ns, line.id))
        return SourceResult(tuple(found[:limit]), truncated=len(found) > limit)


class FileExemplarSource:
    def __init__(self, exemplars: Sequence[Exemplar], settings: PrometheusSettings) -> None:
        self.exemplars = exemplars
        self.settings = settings

    async def fetch(self, trace_id: TraceId, window: Window, tenant: str | None = None) -> SourceResult[tuple[Exemplar, ...]]:
        wide = window.widened(int(self.settings.margin_seconds * 1e9))
        mine = [ex for ex in self.exemplars if ex.trace_id == trace_id.hex and wide.start_ns <= ex.timestamp_ns <= wide.end_ns]
        mine.sort(key=lambda ex: (ex.timestamp_ns, ex.metric))
        limit = self.settings.max_exemplars
        return SourceResult(tuple(mine[:limit]), truncated=len(mine) > limit)
