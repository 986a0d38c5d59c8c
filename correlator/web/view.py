"""Pure: the JSON body of a correlation (+ its nanosecond times) → what the page shows.

Built from the API's body rather than from the model, so whatever the body carries (new finding
kinds, span events, extra span fields) reaches the page without changes here; the model only
gives each item's time in ns, to print it relative to the trace's start.

The split, measured (`python3 bench/run.py page`, docs/page.md): the header, source banners,
findings and the unplaced section are HTML from the server (Jinja2, autoescaped); the waterfall's
rows and each span's detail are built in the browser (page.js, DOM text nodes only) from the body
embedded as a JSON data block — only the rows that are open, the rest when their subtree is
opened. Rows formatted on the server cost 2.3-2.8 times the whole JSON render at 1k-10k spans and made
a 10k-span page 17 MB; the data block costs about one more `orjson.dumps` of the body.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from correlator.config import Settings
from correlator.correlate import Outcome
from correlator.gcpause import without_gc
from correlator.render import log_entries
from correlator.web.pages import render

__all__ = ["LogItem", "Page", "build_page", "embedded_json", "fmt_ms", "level_class", "render_correlation"]

COLOURS = 10  # service colours in page.css (.c0 … .c9)

_LEVELS = {
    **dict.fromkeys(("error", "err", "fatal", "critical", "crit", "emerg", "alert", "panic", "severe"), "error"),
    **dict.fromkeys(("warn", "warning"), "warn"),
    **dict.fromkeys(("info", "information", "informational", "notice"), "info"),
    **dict.fromkeys(("debug", "trace", "dbg", "fine", "verbose"), "debug"),
}
MATCH_LABELS = {"span_id": "span_id", "time": "service+time", "trace": "trace level", "inferred": "inferred"}
_CLASS_SAFE = re.compile(r"[^a-z0-9_-]")
_DATA_MARK = f"data-{secrets.token_hex(16)}"


def level_class(level: object) -> str:
    return _LEVELS.get(str(level).lower(), "other") if level else "other"


def css_token(value: object) -> str:
    return _CLASS_SAFE.sub("_", str(value).lower())[:40]


def fmt_ms(ms: float) -> str:
    """Milliseconds as people read them: 80 ms, 1.25 ms, 0.004 ms, 6.47 s (page.js fmtMs says the same)."""
    if ms == 0:
        return "0 ms"
    if abs(ms) >= 999_500:  # .3g would print 1e+03
        return f"{ms / 1000:.0f} s"
    if abs(ms) >= 1000:
        return f"{ms / 1000:.3g} s"
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


@dataclass(frozen=True, slots=True)
class ExemplarItem:
    rel: str
    metric: str
    series: Sequence[tuple[str, str]]  # labels without __name__ and le
    bucket: str | None  # `le` of a histogram bucket
    value: str
    match: str


@dataclass(slots=True)
class Page:
    trace_id: str
    summary: Mapping[str, Any]
    duration: str
    colours: Mapping[str, int]
    sources: Sequence[tuple[str, Mapping[str, Any]]]
    failed: Sequence[tuple[str, Mapping[str, Any]]]
    warnings: Sequence[str]
    availability: str | None  # the API's one-sentence note on a partial answer
    findings: Sequence[Mapping[str, Any]]
    has_rows: bool
    ticks: Sequence[tuple[int, str]]
    unplaced_logs: Sequence[LogItem]
    unplaced_exemplars: Sequence[ExemplarItem]
    jaeger_link: str | None
    grafana_link: str | None
    data: bytes  # the JSON data block's content
    standing: str | None = None  # where the trace stands in its series (standing_run), when known


def embedded_json(data: Any) -> bytes:
    """`data` as the content of a <script type="application/json"> block (never executed, never able to close it)."""
    # Inside <script type="application/json"> only "</script" and "<!--" could end or bend the block; these
    # characters can only stand inside JSON strings, where the \u escapes keep the value identical.
    raw = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    for char, escaped in ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026")):
        if char in raw:  # one memchr scan when absent; a copy only when present
            raw = raw.replace(char, escaped)
    return raw


@without_gc
def render_correlation(body: Mapping[str, Any], outcome: Outcome, settings: Settings) -> bytes:
    """The whole page as UTF-8. The data block is spliced in as bytes after the template ran: at 10k
    spans it is megabytes that Jinja would only copy (the marker is random per process: no data can forge it)."""
    page = build_page(body, outcome, settings)
    data, page.data = page.data, b""
    html = render("correlation.html", page=page, data_mark=_DATA_MARK, home_query=settings.prometheus.slow_requests_selector)
    head, _, tail = html.partition(_DATA_MARK)
    return b"".join((head.encode(), data, tail.encode()))


@without_gc
def build_page(body: Mapping[str, Any], outcome: Outcome, settings: Settings) -> Page:
    c, tree = outcome.correlation, outcome.tree
    origin = tree.start_ns if tree is not None else c.window.start_ns
    summary = body["summary"]
    total_ms = float(summary.get("duration_ms") or 0.0)
    colours = {svc: i % COLOURS for i, svc in enumerate(summary.get("services") or [])}

    lines = c.logs + c.inferred_logs  # the body's `logs`, in its order: lines with the trace ID, then inferred ones

    def rel(ns: int) -> str:
        return ("+" if ns >= origin else "") + fmt_ms((ns - origin) / 1e6)

    # The body's entries of the lines placed on no span (a body may hold only their JSON: lines_as_json).
    entries = log_entries(body, c)
    unplaced = [i for i, place in enumerate(c.log_placements + c.inferred_placements) if place.span_id is None]
    if len(entries) != len(lines):
        raise ValueError("the body's logs and the correlation's lines differ in length")
    unplaced_logs = [
        LogItem(rel(line.timestamp_ns), str(entry.get("level") or ""), level_class(entry.get("level")),
                MATCH_LABELS.get(entry.get("match") or "", str(entry.get("match"))), str(entry.get("service") or ""),
                str(entry.get("line")))
        for entry, line in ((entries[i], lines[i]) for i in unplaced)]
    unplaced_exemplars = [
        ExemplarItem(rel(ex.timestamp_ns), str(entry.get("metric")),
                     [(k, str(v)) for k, v in (entry.get("series") or {}).items() if k not in ("__name__", "le")],
                     (entry.get("series") or {}).get("le"), str(entry.get("value")),
                     MATCH_LABELS.get(entry.get("match") or "", str(entry.get("match"))))
        for entry, ex in zip(body["exemplars"], c.exemplars, strict=True) if entry.get("span_id") is None]
    event_rel: dict[str, list[float]] = {}
    if tree is not None:
        for span in tree.by_id.values():
            if span.events:
                event_rel[span.span_id] = [(e.time_ns - origin) / 1e6 for e in span.events]
    grafana = settings.web.grafana_links
    data = {
        "body": body,
        "log_rel_ms": [(line.timestamp_ns - origin) / 1e6 for line in lines],
        "exemplar_rel_ms": [(ex.timestamp_ns - origin) / 1e6 for ex in c.exemplars],
        "event_rel_ms": event_rel,
        "origin_ms": origin // 1_000_000,
        "explore": {"url": settings.grafana.url.rstrip("/"), "loki_uid": settings.grafana.loki_uid,
                    "prometheus_uid": settings.grafana.prometheus_uid, "service_label": settings.loki.service_label}
        if grafana else None,
        "jaeger": settings.jaeger.ui_url.rstrip("/") if settings.jaeger.ui_url else None,
        "visible_rows": settings.web.visible_rows,
        "colours": colours,
    }
    failed = [(name, report) for name, report in body["sources"].items()
              if report.get("status") not in ("ok", "skipped") or report.get("truncated")]
    return Page(
        trace_id=c.trace_id, summary=summary, duration=fmt_ms(total_ms) if summary.get("duration_ms") is not None else "—",
        colours=colours, sources=list(body["sources"].items()), failed=failed, warnings=list(body.get("warnings") or ()),
        availability=body.get("availability"),
        findings=list(body.get("findings") or ()), has_rows=tree is not None and bool(tree.order),  # the body's spans (a list or their JSON)
        ticks=[(p, fmt_ms(total_ms * p / 100)) for p in (0, 25, 50, 75, 100)],
        unplaced_logs=unplaced_logs, unplaced_exemplars=unplaced_exemplars,
        jaeger_link=f"{settings.jaeger.ui_url.rstrip('/')}/trace/{c.trace_id}" if settings.jaeger.ui_url else None,
        grafana_link=body["links"].get("grafana") if grafana and c.trace is not None else None,
        data=embedded_json(data),
        standing=(body.get("standing") or {}).get("message") if (body.get("standing") or {}).get("known") else None,
    )
