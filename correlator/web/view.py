"""Pure: the JSON body of a correlation (+ its nanosecond times) → what the page template shows.

Built from the API's body rather than from the model so whatever the body carries (new finding
kinds, span events, extra span fields) reaches the page without changes here. The only thing
read from the model is each item's time in ns, to print it relative to the trace's start.
Nothing here escapes: the template does (Jinja2 autoescape), every string is untrusted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from correlator.config import Settings
from correlator.correlate import Outcome
from correlator.web.links import explore_logs_url, explore_series_url

__all__ = ["Group", "LogItem", "Page", "Row", "build_page", "level_class"]

COLOURS = 10  # service colours in page.css (.c0 … .c9)
MAX_INDENT = 24  # indentation classes in page.css (.d0 … .d24); deeper rows keep the last
GROUP_MIN = 3  # consecutive same-target siblings shown as one collapsible row

_LEVELS = {
    **dict.fromkeys(("error", "err", "fatal", "critical", "crit", "emerg", "alert", "panic", "severe"), "error"),
    **dict.fromkeys(("warn", "warning"), "warn"),
    **dict.fromkeys(("info", "information", "informational", "notice"), "info"),
    **dict.fromkeys(("debug", "trace", "dbg", "fine", "verbose"), "debug"),
}
_MATCH = {"span_id": "span_id", "time": "service+time", "trace": "trace level", "inferred": "inferred"}
_TARGET_KEYS = ("http.route", "url.template", "url.path", "http.target", "server.address", "peer.service",
                "rpc.service", "rpc.method", "db.statement", "db.query.text", "messaging.destination.name")
_LITERALS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\b\d+(?:\.\d+)?\b")
_CLASS_SAFE = re.compile(r"[^a-z0-9_-]")


def level_class(level: object) -> str:
    return _LEVELS.get(str(level).lower(), "other") if level else "other"


def _class_token(value: object) -> str:
    return _CLASS_SAFE.sub("_", str(value).lower())[:40]


def _num(ms: float) -> str:
    """Milliseconds as people read them: 80 ms, 1.25 ms, 0.004 ms, 12.3 s."""
    if ms == 0:
        return "0 ms"
    if abs(ms) >= 10_000:
        return f"{ms / 1000:.1f} s"
    if abs(ms) >= 100:
        return f"{ms:.0f} ms"
    if abs(ms) >= 1:
        return f"{ms:.3g} ms"
    return f"{ms:.3f} ms"


@dataclass(frozen=True, slots=True)
class LogItem:
    rel: str  # "+12.3 ms" from the trace's start
    level: str  # as written by the producer (untrusted)
    level_class: str  # one of error|warn|info|debug|other
    match: str  # which join rule placed it, as users read it
    service: str
    line: str
    span_id: str | None


@dataclass(frozen=True, slots=True)
class ExemplarItem:
    rel: str
    metric: str
    series: Sequence[tuple[str, str]]  # labels without __name__ and le
    bucket: str | None  # `le` of a histogram bucket
    value: str
    match: str
    trace_labels: Sequence[tuple[str, str]]
    explore: str | None
    span_id: str | None


@dataclass(frozen=True, slots=True)
class EventItem:
    rel: str
    name: str
    attributes: Sequence[tuple[str, str]]


@dataclass(slots=True)
class Row:
    span_id: str
    service: str
    operation: str
    colour: int
    depth: int
    indent: int
    left: str  # bar position and width, % of the trace
    width: str
    duration: str
    self_time: str
    status: str
    error: bool
    message: str | None
    critical: bool
    badges: Sequence[tuple[str, str]]  # (css token, finding kind)
    log_count: int
    exemplar_count: int
    has_children: bool
    collapsed: bool = False
    hidden: bool = False
    group: str | None = None
    kind: str = ""
    start: str = ""
    attributes: Sequence[tuple[str, str]] = ()
    extra: Sequence[tuple[str, str]] = ()  # span fields the page has no place for yet, shown as they are
    events: Sequence[EventItem] = ()
    logs: Sequence[LogItem] = ()
    exemplars: Sequence[ExemplarItem] = ()
    logs_link: str | None = None
    is_group: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    """A header row standing for ≥ GROUP_MIN consecutive sibling calls to the same target."""

    group: str
    depth: int
    indent: int
    count: int
    service: str
    operation: str
    colour: int
    left: str
    width: str
    total: str
    span: str
    hidden: bool
    is_group: bool = True


@dataclass(slots=True)
class Page:
    trace_id: str
    summary: Mapping[str, Any]
    duration: str
    sources: Sequence[tuple[str, Mapping[str, Any]]]
    failed: Sequence[tuple[str, Mapping[str, Any]]]
    warnings: Sequence[str]
    findings: Sequence[Mapping[str, Any]]
    items: list[Row | Group]
    ticks: Sequence[tuple[int, str]]
    unplaced_logs: Sequence[LogItem]
    unplaced_exemplars: Sequence[ExemplarItem]
    jaeger_link: str | None
    grafana_link: str | None
    collapsed_note: str | None
    colours: Mapping[str, int] = field(default_factory=dict)


_KNOWN_SPAN_KEYS = frozenset({"span_id", "parent_span_id", "service", "operation", "start_ms", "duration_ms", "self_ms",
                              "depth", "kind", "status", "status_message", "attributes", "events", "log_ids",
                              "exemplar_ids"})


def _pairs(mapping: Any) -> list[tuple[str, str]]:
    if not isinstance(mapping, Mapping):
        return []
    return [(str(k), v if isinstance(v, str) else str(v)) for k, v in mapping.items()]


def _target(span: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes two sibling calls "the same call": the body's own identity when it has one."""
    if "target" in span:
        return (span["service"], span["operation"], str(span["target"]))
    attrs = span.get("attributes") or {}
    for key in _TARGET_KEYS:
        if key in attrs:
            return (span["service"], span["operation"], key, _LITERALS.sub("?", str(attrs[key])))
    return (span["service"], span["operation"])


def _pct(value_ms: float, total_ms: float) -> str:
    return f"{max(0.0, min(100.0, value_ms * 100 / total_ms)):.3f}" if total_ms > 0 else "0"


def build_page(body: Mapping[str, Any], outcome: Outcome, settings: Settings) -> Page:
    c, tree = outcome.correlation, outcome.tree
    origin = tree.start_ns if tree is not None else c.window.start_ns
    summary = body["summary"]
    total_ms = float(summary.get("duration_ms") or 0.0)
    colours = {svc: i % COLOURS for i, svc in enumerate(summary.get("services") or [])}
    critical = set(body.get("critical_path") or ())
    badges: dict[str, list[tuple[str, str]]] = {}
    for finding in body.get("findings") or ():
        for sid in finding.get("span_ids") or ():
            badges.setdefault(sid, []).append((_class_token(finding.get("kind")), str(finding.get("kind"))))

    def rel(ns: int) -> str:
        return ("+" if ns >= origin else "") + _num((ns - origin) / 1e6)

    def log_item(entry: Mapping[str, Any], ns: int) -> LogItem:
        match = _MATCH.get(entry.get("match") or "", str(entry.get("match")))
        if entry.get("confidence"):
            match = f"{match} ({entry['confidence']})"
        return LogItem(rel(ns), str(entry.get("level") or ""), level_class(entry.get("level")), match,
                       str(entry.get("service") or ""), str(entry.get("line")), entry.get("span_id"))

    def exemplar_item(entry: Mapping[str, Any], ns: int) -> ExemplarItem:
        series = entry.get("series") or {}
        shown = [(k, str(v)) for k, v in series.items() if k not in ("__name__", "le")]
        explore = explore_series_url(settings, str(entry.get("metric")), series, ns) if settings.web.grafana_links else None
        return ExemplarItem(rel(ns), str(entry.get("metric")), shown, series.get("le"), str(entry.get("value")),
                            _MATCH.get(entry.get("match") or "", str(entry.get("match"))),
                            _pairs(entry.get("labels")), explore, entry.get("span_id"))

    logs_by_id = {entry["id"]: log_item(entry, line.timestamp_ns) for entry, line in zip(body["logs"], c.logs, strict=True)}
    exemplars_by_id = {entry["id"]: exemplar_item(entry, ex.timestamp_ns)
                       for entry, ex in zip(body["exemplars"], c.exemplars, strict=True)}
    unplaced_logs = [item for item in logs_by_id.values() if item.span_id is None]
    unplaced_exemplars = [item for item in exemplars_by_id.values() if item.span_id is None]

    spans: Sequence[Mapping[str, Any]] = body["spans"]
    child_count: dict[str, int] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        if parent is not None:
            child_count[parent] = child_count.get(parent, 0) + 1
    # Which depth to open a big trace to: as deep as fits in visible_rows.
    open_depth = 1 << 30
    if len(spans) > settings.web.visible_rows:
        per_depth: dict[int, int] = {}
        for span in spans:
            per_depth[span["depth"]] = per_depth.get(span["depth"], 0) + 1
        shown, open_depth = 0, 0
        for depth in sorted(per_depth):
            shown += per_depth[depth]
            if shown > settings.web.visible_rows:
                break
            open_depth = depth
    grafana = settings.web.grafana_links
    rows: list[Row] = []
    for span in spans:
        sid, depth = span["span_id"], span["depth"]
        model_span = tree.by_id[sid] if tree is not None else None
        events = []
        for i, event in enumerate(span.get("events") or ()):
            ns = model_span.events[i].time_ns if model_span is not None and i < len(model_span.events) else origin
            events.append(EventItem(rel(ns), str(event.get("name")), _pairs(event.get("attributes"))))
        log_ids, exemplar_ids = span.get("log_ids") or (), span.get("exemplar_ids") or ()
        start_ms, duration_ms = float(span["start_ms"]), float(span["duration_ms"])
        status = str(span.get("status") or "unset")
        logs_link = None
        if grafana and log_ids and model_span is not None:
            logs_link = explore_logs_url(settings, span["service"], c.trace_id, model_span.start_ns, model_span.end_ns)
        rows.append(Row(
            span_id=sid, service=str(span["service"]), operation=str(span["operation"]),
            colour=colours.get(span["service"], 0), depth=depth, indent=min(depth, MAX_INDENT),
            left=_pct(start_ms, total_ms), width=f"{max(0.15, float(_pct(duration_ms, total_ms))):.3f}",
            duration=_num(duration_ms), self_time=_num(float(span.get("self_ms") or 0.0)), status=status,
            error=status == "error", message=span.get("status_message"), critical=sid in critical,
            badges=badges.get(sid, ()), log_count=len(log_ids), exemplar_count=len(exemplar_ids),
            has_children=sid in child_count, collapsed=depth >= open_depth and sid in child_count,
            hidden=depth > open_depth, kind=str(span.get("kind") or ""), start=rel(origin + int(start_ms * 1e6)),
            attributes=_pairs(span.get("attributes")),
            extra=[(k, str(v)) for k, v in span.items() if k not in _KNOWN_SPAN_KEYS],
            events=events, logs=[logs_by_id[i] for i in log_ids if i in logs_by_id],
            exemplars=[exemplars_by_id[i] for i in exemplar_ids if i in exemplars_by_id], logs_link=logs_link,
        ))
    items = _grouped(spans, rows, total_ms)
    failed = [(name, report) for name, report in body["sources"].items()
              if report.get("status") not in ("ok", "skipped") or report.get("truncated")]
    jaeger_link = f"{settings.jaeger.ui_url.rstrip('/')}/trace/{c.trace_id}" if settings.jaeger.ui_url else None
    hidden_rows = sum(1 for row in rows if row.hidden)
    note = (f"{len(rows)} spans: subtrees below depth {open_depth} start collapsed ({hidden_rows} rows); "
            "open them with ▸") if hidden_rows else None
    ticks = [(p, _num(total_ms * p / 100)) for p in (0, 25, 50, 75, 100)]
    return Page(
        trace_id=c.trace_id, summary=summary, duration=_num(total_ms) if summary.get("duration_ms") is not None else "—",
        sources=list(body["sources"].items()), failed=failed, warnings=list(body.get("warnings") or ()),
        findings=list(body.get("findings") or ()), items=items, ticks=ticks, unplaced_logs=unplaced_logs,
        unplaced_exemplars=unplaced_exemplars, jaeger_link=jaeger_link,
        grafana_link=body["links"].get("grafana") if grafana and c.trace is not None else None,
        collapsed_note=note, colours=colours,
    )


def _grouped(spans: Sequence[Mapping[str, Any]], rows: list[Row], total_ms: float) -> list[Row | Group]:
    """Rows in tree order, each run of ≥ GROUP_MIN consecutive same-target siblings behind a header row.

    Siblings are consecutive among their parent's children, not in the row list (a sibling's
    subtree sits between them): a run is found per parent, then the header goes before its first member.
    """
    by_parent: dict[str | None, list[int]] = {}
    for i, span in enumerate(spans):
        by_parent.setdefault(span.get("parent_span_id"), []).append(i)
    headers: dict[int, Group] = {}
    for children in by_parent.values():
        if len(children) < GROUP_MIN:
            continue
        run = [children[0]]
        for index in [*children[1:], -1]:
            if index >= 0 and _target(spans[index]) == _target(spans[run[0]]):
                run.append(index)
                continue
            if len(run) >= GROUP_MIN:
                name = f"g{run[0]}"
                first, members = rows[run[0]], [rows[i] for i in run]
                start = min(float(spans[i]["start_ms"]) for i in run)
                end = max(float(spans[i]["start_ms"]) + float(spans[i]["duration_ms"]) for i in run)
                total = sum(float(spans[i]["duration_ms"]) for i in run)
                for member in members:
                    member.group = name
                hidden = first.hidden
                for member in members:
                    member.hidden = True
                headers[run[0]] = Group(name, first.depth, first.indent, len(run), first.service, first.operation,
                                        first.colour, _pct(start, total_ms), f"{max(0.15, float(_pct(end - start, total_ms))):.3f}",
                                        _num(total), _num(end - start), hidden)
            if index >= 0:
                run = [index]
    # A grouped member's subtree is hidden with it.
    hide_below = -1
    for row in rows:
        if hide_below >= 0 and row.depth > hide_below:
            row.hidden = True
            continue
        hide_below = row.depth if (row.group is not None or row.collapsed or row.hidden) else -1
    out: list[Row | Group] = []
    for i, row in enumerate(rows):
        if i in headers:
            out.append(headers[i])
        out.append(row)
    return out
