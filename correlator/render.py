"""Correlation → the JSON body of `GET /correlate/{trace_id}` (DESIGN.md "response contract").

Kept apart from the model so the data stays free of presentation, and from the API so the
CLI's `--json` prints exactly the same body.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, overload

import orjson

from correlator.analysis.identity import native_function, target
from correlator.config import Settings
from correlator.correlate import Outcome
from correlator.gcpause import without_gc
from correlator.join import ids_by_span
from correlator.model import (
    Confidence,
    Correlation,
    Exemplar,
    Finding,
    LogLine,
    Match,
    Placement,
    Severity,
    SourceReport,
    SourceStatus,
    SpanEvent,
)
from correlator.skew import clock_skew_summary
from correlator.sources import _native
from correlator.sources._http import _quote
from correlator.spantree import SpanTree
from correlator.timeparams import rfc3339_ns

__all__ = ["LogEntries", "correlation_body", "grafana_explore_url", "jaeger_trace_url", "log_entries", "rfc3339_ns"]


# `round(ns / 1e6, 3)` for ns in [0, 2⁵²) that are not a tie (ns % 1000 == 500), from integers: ns/1e6 is
# at least 1e-6 from a tie there and its float within 5e-7 of it, so both round the same way, and
# q / 1000 is the float nearest that decimal, as round() returns. A third of the cost (3 per span).
_FAST_MS_BELOW = 1 << 52


def _ms(ns: int) -> float:
    if 0 <= ns < _FAST_MS_BELOW:
        q, r = divmod(ns, 1000)
        if r != 500:
            return (q + (r > 500)) / 1000
    return round(ns / 1_000_000, 3)


def jaeger_trace_url(settings: Settings, trace_hex: str) -> str:
    base = (settings.jaeger.ui_url or settings.jaeger.url).rstrip("/")
    return f"{base}/trace/{trace_hex}"


def grafana_explore_url(settings: Settings, trace_hex: str, start_ns: int | None = None, end_ns: int | None = None) -> str:
    """Grafana Explore opened on the Jaeger datasource with this trace (panes URL format):
    `panes` is the compact JSON of {"trace": {"datasource": uid, "queries": [{"refId": "A", "datasource":
    {"type": "jaeger", "uid": uid}, "query": trace_hex}], "range": {"from": "…", "to": "…"}}} (no queryType: the
    Jaeger datasource's "trace ID" mode), quoted as `urlencode(…, quote_via=quote)` would."""
    head = _explore_head(settings.grafana.url, settings.grafana.jaeger_uid)
    if trace_hex.isascii() and trace_hex.isalnum():  # a trace ID: its JSON string and its quoting are known (~3 µs)
        if start_ns is None or end_ns is None:
            return f"{head}%22{trace_hex}%22%7D%5D%7D%7D"
        return (f"{head}%22{trace_hex}%22%7D%5D%2C%22range%22%3A%7B%22from%22%3A%22{start_ns // 1_000_000 - 60_000}"
                f"%22%2C%22to%22%3A%22{end_ns // 1_000_000 + 60_000}%22%7D%7D%7D")  # ints: digits and '-', never quoted
    tail = json.dumps(trace_hex) + "}]"
    if start_ns is not None and end_ns is not None:
        tail += f',"range":{{"from":"{start_ns // 1_000_000 - 60_000}","to":"{end_ns // 1_000_000 + 60_000}"}}'
    return head + _quote(tail + "}}")


@functools.lru_cache(maxsize=64)
def _explore_head(grafana_url: str, uid: str) -> str:
    """The link up to the trace ID's JSON string, quoted (the same for every trace: ~10 µs a body; quoting is per byte,
    so the head's quote and the tail's make the whole's)."""
    head = f'{{"trace":{{"datasource":{json.dumps(uid)},"queries":[{{"refId":"A","datasource":{{"type":"jaeger","uid":{json.dumps(uid)}}},"query":'
    return f"{grafana_url.rstrip('/')}/explore?schemaVersion=1&panes={_quote(head)}"


# The containers the native render reads as dicts (`ids_by_span` makes defaultdicts: `.get` is dict's own).
_DICTS = (dict, defaultdict)


def _spans(tree: SpanTree, logs: Mapping[str, list[str]], exemplars: Mapping[str, list[str]],
           inferred: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """Every span in the tree's order: natively when the extension is installed (the same dicts,
    tests/test_render_spans_native.py), else `_spans_python`."""
    # One empty list for every span without IDs or events (most): orjson writes each as [], and 100k fewer
    # containers for the collector to walk after the render. Nothing mutates a rendered body.
    no_ids: list[str] = []
    no_events: list[dict[str, Any]] = []
    native = native_function("render_spans")
    if (native is not None and type(tree.order) is list and type(tree.by_id) is dict and type(tree.self_ns) is dict
            and type(tree.depth) is dict and type(tree.targets) is dict
            and type(logs) in _DICTS and type(exemplars) in _DICTS and type(inferred) in _DICTS):
        rendered: list[dict[str, Any]] | None = native(
            tree.order, tree.by_id, tree.self_ns, tree.depth, tree.targets, logs, exemplars, inferred, tree.start_ns,
            no_ids, no_events, _ms, _events, target)
        if rendered is not None:
            return rendered
    return _spans_python(tree, logs, exemplars, inferred, no_ids, no_events)


def _events(events: Sequence[SpanEvent], origin: int) -> list[dict[str, Any]]:
    """A span's events, in time order (the sources sort them); offset_ms as the text tree's `· +12ms` lines."""
    return [{"name": e.name, "timestamp": rfc3339_ns(e.time_ns), "offset_ms": _ms(e.time_ns - origin),
             "attributes": dict(e.attributes)} for e in events]


def _spans_json(tree: SpanTree, logs: Mapping[str, list[str]], exemplars: Mapping[str, list[str]],
                inferred: Mapping[str, list[str]]) -> orjson.Fragment | None:
    """The `spans` list as the JSON orjson would write for `_spans`' dicts, without making them (100k dicts, their
    serialisation and their freeing were most of a big trace's render); None without the extension or when it
    hands the trace back. Byte for byte the same (tests/test_render_spans_native.py)."""
    cols, by_columns = tree.cols, native_function("render_spans_json_cols")
    if (cols is not None and by_columns is not None and len(cols.order) == len(tree.order) and type(tree.targets) is dict
            and type(logs) in _DICTS and type(exemplars) in _DICTS and type(inferred) in _DICTS
            and all(type(c) is list for c in (cols.order, cols.depths, cols.ids, cols.spans, cols.self_ns))):
        # From the tree's columns: no lookup by span ID in three 100k-entry dicts per span.
        written_cols: bytes | None = by_columns(cols.order, cols.depths, cols.ids, cols.spans, cols.self_ns, tree.targets,
                                                logs, exemplars, inferred, tree.start_ns, _ms, _events, target, _dumps)
        if written_cols is not None:
            return orjson.Fragment(written_cols)
    native = native_function("render_spans_json")
    if (native is None or type(tree.order) is not list or type(tree.by_id) is not dict or type(tree.self_ns) is not dict
            or type(tree.depth) is not dict or type(tree.targets) is not dict
            or type(logs) not in _DICTS or type(exemplars) not in _DICTS or type(inferred) not in _DICTS):
        return None
    written: bytes | None = native(tree.order, tree.by_id, tree.self_ns, tree.depth, tree.targets, logs,
                                                     exemplars, inferred, tree.start_ns, _ms, _events, target, _dumps)
    return orjson.Fragment(written) if written is not None else None


def _dumps(value: Any) -> bytes:
    """What the body's writers (api, offload, the page) do with it."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _spans_python(tree: SpanTree, logs: Mapping[str, list[str]], exemplars: Mapping[str, list[str]],
                  inferred: Mapping[str, list[str]], no_ids: list[str], no_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every span in the tree's order (one loop, names bound once: 100k spans render in one call)."""
    origin = tree.start_ns
    by_id, self_ns, depth = tree.by_id, tree.self_ns, tree.depth
    targets = tree.targets  # what the analysis already worked out
    out: list[dict[str, Any]] = []
    append = out.append
    for sid in tree.order:
        span = by_id[sid]
        start, end, own = span.start_ns, span.end_ns, self_ns[sid]
        # _ms inline, thrice (the call is a third of its cost).
        offset, duration = start - origin, end - start
        q, r = divmod(offset, 1000)
        start_ms = (q + (r > 500)) / 1000 if r != 500 and 0 <= offset < _FAST_MS_BELOW else _ms(offset)
        q, r = divmod(duration, 1000)
        duration_ms = (q + (r > 500)) / 1000 if r != 500 and 0 <= duration < _FAST_MS_BELOW else _ms(duration)
        q, r = divmod(own, 1000)
        self_ms = (q + (r > 500)) / 1000 if r != 500 and 0 <= own < _FAST_MS_BELOW else _ms(own)
        what = targets.get(sid, _UNKNOWN)
        if what is _UNKNOWN:
            what = target(span)
        append({
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "service": span.service,
            "operation": span.operation,
            "target": what,  # what it calls (analysis.identity): spans compare, loop and fold by service+name+target
            "start_ms": start_ms,
            "duration_ms": duration_ms,
            "self_ms": self_ms,
            "depth": depth[sid],
            "kind": span.kind,
            "status": span.status,
            "status_message": span.status_message,
            # The span's own dict when it is a plain one: nothing mutates a span or a rendered body (100k copies
            # made and freed at 100k spans); anything else as a dict.
            "attributes": attributes if type(attributes := span.attributes) is dict else dict(attributes),
            "events": _events(span.events, origin) if span.events else no_events,
            "log_ids": logs.get(sid) or no_ids,
            "exemplar_ids": exemplars.get(sid) or no_ids,
            "inferred_log_ids": inferred.get(sid) or no_ids,  # lines without a trace ID, attached by time
        })
    return out


_UNKNOWN = object()


# Enum members' `.value` goes through a Python-level property: a dict lookup is a tenth of it.
_MATCH_VALUE = {m: m.value for m in Match}
_CONFIDENCE_VALUE = {c: c.value for c in Confidence}


def _second_text(seconds: int) -> str:
    return rfc3339_ns(seconds * 1_000_000_000)[:-11]


def _logs(lines: Sequence[LogLine], places: Sequence[Placement]) -> list[dict[str, Any]]:
    """Every log line with where it was placed: natively when the extension is installed (the same dicts,
    tests/test_native.py), else `_logs_python`."""
    native = _native.MODULE
    if native is not None and type(lines) is tuple and type(places) is tuple:
        rendered: list[dict[str, Any]] | None = native.render_logs(lines, places, _second_text, _MATCH_VALUE, _CONFIDENCE_VALUE)
        if rendered is not None:
            return rendered
    return _logs_python(lines, places)


def _logs_json(lines: Sequence[LogLine], places: Sequence[Placement]) -> orjson.Fragment | None:
    """The `logs` list as the JSON orjson would write for `_logs`' dicts, without making them (at 50k lines the dicts,
    their serialisation and their freeing were most of the render); None without the extension (or an older one) or
    when it hands the lines back. Byte for byte the same (tests/test_render_logs_native.py)."""
    native = native_function("render_logs_json")
    if native is None or type(lines) is not tuple or type(places) is not tuple:
        return None
    written: bytes | None = native(lines, places, _second_text, _MATCH_VALUE, _CONFIDENCE_VALUE, _dumps)
    return orjson.Fragment(written) if written is not None else None


class LogEntries(Sequence[dict[str, Any]]):
    """A body's `logs` entries made on demand from its correlation, for a body that holds their JSON
    (`lines_as_json`): the text answer reads the first 50, the page the unplaced ones."""

    def __init__(self, c: Correlation) -> None:
        self._lines, self._places = c.logs + c.inferred_logs, c.log_placements + c.inferred_placements

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return _logs(self._lines[index], self._places[index])
        return _logs_python((self._lines[index],), (self._places[index],))[0]


def log_entries(body: Mapping[str, Any], c: Correlation) -> Sequence[dict[str, Any]]:
    """The body's `logs` as dicts, whether it holds them or their JSON."""
    logs = body["logs"]
    return LogEntries(c) if isinstance(logs, orjson.Fragment) else logs


def _logs_python(lines: Sequence[LogLine], places: Sequence[Placement]) -> list[dict[str, Any]]:
    """Every log line with where it was placed (one loop; each second's RFC 3339 text made once)."""
    seconds_text: dict[int, str] = {}
    out: list[dict[str, Any]] = []
    append = out.append
    for line, place in zip(lines, places, strict=True):
        seconds, frac = divmod(line.timestamp_ns, 1_000_000_000)
        second = seconds_text.get(seconds)
        if second is None:
            second = seconds_text[seconds] = _second_text(seconds)
        entry = {
            "id": line.id,
            "timestamp": second + "." + str(frac).zfill(9) + "Z",  # as rfc3339_ns (0 ≤ frac < 10⁹)
            "service": line.service,
            "level": line.level,
            "line": line.line,
            "labels": dict(line.labels),
            "metadata": dict(line.metadata),
            "span_id": place.span_id,
            "match": _MATCH_VALUE[place.match],
        }
        if place.confidence is not None:
            entry["confidence"] = _CONFIDENCE_VALUE[place.confidence]
        append(entry)
    return out


def _exemplars(exemplars: Sequence[Exemplar], places: Sequence[Placement]) -> list[dict[str, Any]]:
    """`_exemplar` of each (one loop; each second's RFC 3339 text made once, the match's value by a dict lookup:
    20k exemplars at the service's caps). The same dicts (tests/test_render_logs_native.py)."""
    seconds_text: dict[int, str] = {}
    out: list[dict[str, Any]] = []
    append = out.append
    isfinite = math.isfinite
    for ex, place in zip(exemplars, places, strict=True):
        number = ex.value
        value: float | str = number if isfinite(number) else "+Inf" if number > 0 else "-Inf" if number < 0 else "NaN"
        seconds, frac = divmod(ex.timestamp_ns, 1_000_000_000)
        second = seconds_text.get(seconds)
        if second is None:
            second = seconds_text[seconds] = _second_text(seconds)
        append({
            "id": ex.id,
            "metric": ex.metric,
            "series": dict(ex.series),
            "labels": dict(ex.labels),
            "value": value,
            "timestamp": second + "." + str(frac).zfill(9) + "Z",  # as rfc3339_ns (0 ≤ frac < 10⁹)
            "span_id": place.span_id,
            "match": _MATCH_VALUE[place.match],
        })
    return out


def _exemplar(ex: Exemplar, place: Placement) -> dict[str, Any]:
    value: float | str = ex.value if math.isfinite(ex.value) else ("+Inf" if ex.value > 0 else "-Inf" if ex.value < 0 else "NaN")
    return {
        "id": ex.id,
        "metric": ex.metric,
        "series": dict(ex.series),
        "labels": dict(ex.labels),
        "value": value,
        "timestamp": rfc3339_ns(ex.timestamp_ns),
        "span_id": place.span_id,
        "match": place.match.value,
    }


_SEVERITY_VALUE = {s: s.value for s in Severity}
_STATUS_VALUE = {s: s.value for s in SourceStatus}


def _ids_by_span(items: Sequence[LogLine] | Sequence[Exemplar], places: Sequence[Placement]) -> Mapping[str, list[str]]:
    """`join.ids_by_span`, natively when the extension has it (the same mapping, as a plain dict: the render only reads
    it with `.get`; tests/test_body_native.py)."""
    if not items:
        return {}
    native = native_function("ids_by_span")
    if native is not None and type(items) is tuple and type(places) is tuple:
        found: dict[str, list[str]] | None = native(items, places)
        if found is not None:
            return found
    return ids_by_span(items, places)


def _finding(f: Finding) -> dict[str, Any]:
    return {"kind": f.kind, "severity": _SEVERITY_VALUE[f.severity], "message": f.message,
            "span_ids": list(f.span_ids), "evidence": dict(f.evidence)}


def _source(r: SourceReport) -> dict[str, Any]:
    return {"status": _STATUS_VALUE[r.status], "ms": r.ms, "items": r.items, "truncated": r.truncated, "error": r.error,
            "cut": r.cut}


def _summary(c: Correlation, tree: SpanTree | None) -> dict[str, Any]:
    base: dict[str, Any] = {"log_count": len(c.logs), "exemplar_count": len(c.exemplars),
                            "inferred_log_count": len(c.inferred_logs), "untraced": _untraced(c),
                            "clock_skew": clock_skew_summary(c.clock)}
    if c.trace is None or tree is None:
        return {"root_service": None, "root_operation": None, "duration_ms": None, "span_count": 0,
                "services": sorted({line.service for line in c.logs if line.service}), "error_count": 0, **base}
    root = tree.by_id[tree.roots[0]]
    return {
        "root_service": root.service,
        "root_operation": root.operation,
        "duration_ms": _ms(tree.end_ns - tree.start_ns),
        "span_count": len(tree.by_id),
        "services": sorted({s.service for s in tree.by_id.values()}),
        "error_count": sum(1 for s in tree.by_id.values() if s.status == "error"),
        **base,
    }


def _untraced(c: Correlation) -> dict[str, Any]:
    report = c.untraced
    if report is None:
        return {"status": "off"}
    by_confidence = {"high": 0, "medium": 0, "low": 0}  # a loop, not a Counter: most answers attach nothing
    for place in c.inferred_placements:
        if place.confidence is not None and (level := _CONFIDENCE_VALUE[place.confidence]) in by_confidence:
            by_confidence[level] += 1
    return {"status": report.status, "fetched": report.fetched, "attached": len(c.inferred_logs),
            "by_confidence": by_confidence,
            "truncated": report.truncated, "overlap_check": report.overlap_check, "error": report.error}


_NAMES = {"jaeger": "Jaeger", "loki": "Loki", "prometheus": "Prometheus"}
_ANSWERED = (SourceStatus.OK, SourceStatus.NOT_FOUND)


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _failure(name: str, report: SourceReport) -> str:
    if not report.error:
        return f"{name}: {report.status.value}"
    return report.error if report.error.startswith(name) else f"{name}: {report.error}"


def availability_note(outcome: Outcome) -> str | None:
    """One plain sentence when the answer is incomplete: which sources were not asked or failed,
    and what that means for the ID. None when every source answered."""
    sources = outcome.correlation.sources
    # `skipped`: deliberately not asked (offline, no file given for it): not a failure.
    failed = {name: report for name, report in sources.items()
              if report.status not in _ANSWERED and report.status is not SourceStatus.SKIPPED}
    if not failed:
        return None
    why = "; ".join(_failure(n, r) for n, r in failed.items())
    failed_names = _listing([_NAMES.get(n, n) for n in failed])
    if outcome.found:
        return f"partial answer: {failed_names} could not be asked ({why}); what they hold about this trace is missing"
    empty = [_NAMES.get(n, n) for n, r in sources.items() if r.status in _ANSWERED]  # answered, and had nothing
    known = f"not found in {_listing(empty)}; " if empty else ""
    return f"{known}{failed_names} could not be asked ({why}), so the ID may still exist there"


@without_gc
def correlation_body(outcome: Outcome, settings: Settings, *, spans_as_json: bool = False,
                     lines_as_json: bool = False) -> dict[str, Any]:
    """The response body. `spans_as_json`: for a body that is only written out with orjson (the JSON answer,
    the page's data block): `spans` may then be an `orjson.Fragment` of the same bytes instead of a list.
    `lines_as_json`: `logs` too (read its entries with `log_entries`)."""
    c, tree = outcome.correlation, outcome.tree
    log_ids = _ids_by_span(c.logs, c.log_placements)
    exemplar_ids = _ids_by_span(c.exemplars, c.exemplar_placements)
    inferred_ids = _ids_by_span(c.inferred_logs, c.inferred_placements)
    spans: list[dict[str, Any]] | orjson.Fragment = []
    if tree is not None:
        written = _spans_json(tree, log_ids, exemplar_ids, inferred_ids) if spans_as_json else None
        spans = written if written is not None else _spans(tree, log_ids, exemplar_ids, inferred_ids)
    all_lines, all_places = c.logs + c.inferred_logs, c.log_placements + c.inferred_placements
    logs: orjson.Fragment | None = _logs_json(all_lines, all_places) if lines_as_json else None
    start_ns = tree.start_ns if tree is not None else c.window.start_ns
    end_ns = tree.end_ns if tree is not None else c.window.end_ns
    return {
        "trace_id": c.trace_id,
        "window": {"start": rfc3339_ns(c.window.start_ns), "end": rfc3339_ns(c.window.end_ns)},
        "summary": _summary(c, tree),
        "spans": spans,
        "logs": logs if logs is not None else _logs(all_lines, all_places),
        "exemplars": _exemplars(c.exemplars, c.exemplar_placements),
        "critical_path": list(c.critical_path),
        "findings": [_finding(f) for f in c.findings],
        "warnings": (list(tree.problems) if tree is not None else []) + list(c.notes),
        "sources": {name: _source(report) for name, report in c.sources.items()},
        "availability": availability_note(outcome),
        "cached": outcome.cached,
        "links": {
            "grafana": grafana_explore_url(settings, c.trace_id, start_ns, end_ns),
            "jaeger": jaeger_trace_url(settings, c.trace_id),
            "self": f"{settings.server.public_url.rstrip('/')}/correlate/{c.trace_id}",
        },
    }
