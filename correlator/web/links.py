"""Links out of the page into Grafana Explore (a span's logs in Loki, an exemplar's series in Prometheus).

Every value that reaches a query comes from a backend (service names, label values): it is
quoted as a LogQL / PromQL string literal, and the whole pane state is URL-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from correlator.config import Settings
from correlator.logql import label_name, line_filter_query, stream_selector

__all__ = ["explore_logs_url", "explore_series_url"]

_MARGIN_MS = 60_000


def _explore(settings: Settings, uid: str, kind: str, query: dict[str, Any], start_ns: int, end_ns: int) -> str:
    pane = {"datasource": uid, "queries": [{"refId": "A", "datasource": {"type": kind, "uid": uid}, **query}],
            "range": {"from": str(start_ns // 1_000_000 - _MARGIN_MS), "to": str(end_ns // 1_000_000 + _MARGIN_MS)}}
    panes = json.dumps({"a": pane}, separators=(",", ":"))
    return f"{settings.grafana.url.rstrip('/')}/explore?schemaVersion=1&panes={quote(panes, safe='')}"


def explore_logs_url(settings: Settings, service: str, trace_hex: str, start_ns: int, end_ns: int) -> str | None:
    """This span's service's lines carrying the trace ID, around the span's time."""
    try:
        selector = stream_selector(settings.loki.service_label, [service])
    except ValueError:  # an empty or non-UTF-8 service name has no selector
        return None
    expr = line_filter_query(selector, trace_hex)
    return _explore(settings, settings.grafana.loki_uid, "loki", {"expr": expr}, start_ns, end_ns)


def explore_series_url(settings: Settings, metric: str, series: Mapping[str, str], at_ns: int) -> str | None:
    """The exemplar's series as a PromQL selector (values quoted, names checked)."""
    matchers = []
    for key, value in series.items():
        if key in ("__name__", "le"):
            continue
        try:
            matchers.append(f"{label_name(key)}={json.dumps(str(value), ensure_ascii=False)}")
        except ValueError:
            return None
    try:
        name = label_name(metric.replace(":", "_")) and metric
    except ValueError:
        return None
    expr = f"{name}{{{','.join(matchers)}}}"
    return _explore(settings, settings.grafana.prometheus_uid, "prometheus", {"expr": expr, "exemplar": True},
                    at_ns, at_ns)
