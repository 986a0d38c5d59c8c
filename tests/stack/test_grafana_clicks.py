"""Each Grafana click path of issue 12 lands on data: (a) exemplar → trace, (c) trace → logs /
metrics, (d) dashboards with an empty trace ID. Grafana's behaviour these tests encode was read
in its source (12.4.0; paths in docs/grafana.md); tests/node runs Grafana's own published code on
the same files. Prometheus is real here (Debian 2.42): it judges the PromQL a click sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from correlator.config import load_settings
from correlator.provisioning import datasources
from tests.conftest import REPO, skip_or_fail
from tests.integration.servers import Prometheus, prometheus_binary, prometheus_server
from tests.stack.test_provisioning import grafana_expand, shipped

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# Query types the 12.4 Jaeger backend answers (pkg/tsdb/jaeger/querydata.go); "" is the trace-ID query.
JAEGER_QUERY_TYPES = {"", "search", "dependencyGraph", "upload"}


def by_type(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ds["type"]: ds for ds in doc["datasources"]}


def explore_panes(url: str) -> list[dict[str, Any]]:
    query = parse_qs(urlsplit(url).query)
    if "panes" in query:
        return list(json.loads(query["panes"][0]).values())
    return [json.loads(query["left"][0])]


# (a) exemplar → trace -----------------------------------------------------------------------

def test_exemplar_open_trace_opens_a_jaeger_trace_id_query() -> None:
    """Not a datasourceUid destination: Grafana would send queryType traceql, which Jaeger ignores."""
    ds = by_type(shipped())
    jaeger_uid = ds["jaeger"]["uid"]
    opens = [d for d in ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] if d["urlDisplayLabel"] == "Open trace"]
    assert {d["name"] for d in opens} == set(load_settings(environ={}).prometheus.trace_id_labels)
    for destination in opens:
        assert "datasourceUid" not in destination
        url = grafana_expand(destination["url"]).replace("${__value.raw}", TRACE_ID)
        assert urlsplit(url).path == "/explore"
        (pane,) = explore_panes(url)
        (query,) = pane["queries"]
        assert pane["datasource"] == jaeger_uid and query["datasource"] == {"type": "jaeger", "uid": jaeger_uid}
        assert query["query"] == TRACE_ID and query.get("queryType", "") == ""


def test_exemplar_open_trace_follows_the_configured_jaeger_uid() -> None:
    doc = datasources(load_settings(environ={"CORRELATOR_GRAFANA_JAEGER_UID": "traces"}))
    (first, *_) = by_type(doc)["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    (pane,) = explore_panes(grafana_expand(first["url"]).replace("${__value.raw}", TRACE_ID))
    assert pane["datasource"] == "traces" and pane["queries"][0]["datasource"]["uid"] == "traces"


# (c) trace → logs / metrics -----------------------------------------------------------------

def span_substitute(text: str, span_name: str = "getCourses") -> str:
    """What Grafana fills for a Jaeger span (table with sources: tests/node/grafana-variables.cjs)."""
    expanded = grafana_expand(text)
    for macro, value in (("${__trace.traceId}", TRACE_ID), ("${__span.spanId}", "00f067aa0ba902b7"),
                         ("${__span.name}", span_name), ("${__tags}", ""), ("$__tags", "")):
        expanded = expanded.replace(macro, value)
    return expanded


def test_trace_to_logs_uses_no_tag_a_jaeger_span_lacks() -> None:
    t2l = by_type(shipped())["jaeger"]["jsonData"]["tracesToLogsV2"]
    query = span_substitute(t2l["query"])
    selector = query[:query.index("}") + 1]
    assert selector == load_settings(environ={}).loki.static_selector == '{service_name=~".+"}'
    assert f'contains "{TRACE_ID}" __line__' in query and f'trace_id="{TRACE_ID}"' in query


@pytest.mark.parametrize(("margin", "start", "end"), [(90, "-90s", "90s"), (60, "-60s", "60s"), (2.5, "-2500ms", "2500ms")])
def test_trace_to_logs_window_is_the_correlators_loki_margin(margin: float, start: str, end: str) -> None:
    doc = datasources(load_settings(environ={"CORRELATOR_LOKI_MARGIN_SECONDS": str(margin)}))
    t2l = by_type(doc)["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert (t2l["spanStartTimeShift"], t2l["spanEndTimeShift"]) == (start, end)


def test_shipped_trace_to_logs_window_equals_the_default_margin() -> None:
    t2l = by_type(shipped())["jaeger"]["jsonData"]["tracesToLogsV2"]
    margin = load_settings(environ={}).loki.margin_seconds
    assert t2l["spanStartTimeShift"] == f"-{margin:g}s" and t2l["spanEndTimeShift"] == f"{margin:g}s"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Prometheus]:
    if prometheus_binary() is None:
        skip_or_fail("prometheus is not installed")
    with prometheus_server() as server:
        yield server


def instant(prometheus: Prometheus, expr: str) -> httpx.Response:
    return httpx.post(f"{prometheus.url}/api/v1/query", data={"query": expr}, timeout=10)


@pytest.mark.integration
@pytest.mark.parametrize("span_name", ["getCourses", "GET /api/courses", 'say "hi" \\ then'])
def test_trace_to_metrics_queries_are_accepted_by_a_real_prometheus(prometheus: Prometheus, span_name: str) -> None:
    """The old `…{$__tags}…` became `…{}…` for every Jaeger span, which Prometheus refuses outright."""
    queries = by_type(shipped())["jaeger"]["jsonData"]["tracesToMetrics"]["queries"]
    assert len(queries) == 2
    for q in queries:
        expr = span_substitute(q["query"], span_name)
        assert f"span_name=`{span_name}`" in expr
        response = instant(prometheus, expr)
        assert response.status_code == 200, (expr, response.text)
        assert response.json()["status"] == "success"


# (d) dashboards ------------------------------------------------------------------------------

def boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((REPO / "grafana/dashboards").glob("*.json"))}


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [q for p in board["panels"] for q in (p, *p.get("panels", []))]


def test_no_link_points_at_the_correlator_with_an_empty_trace_variable() -> None:
    """Dashboard links and markdown show whatever the box holds; only data links sit on rows that have an ID."""
    for name, board in boards().items():
        always_shown = [link["url"] for link in board["links"]]
        always_shown += [url for p in all_panels(board) if p["type"] == "text"
                         for url in re.findall(r"\]\(([^)]*)\)", p["options"]["content"])]
        for url in always_shown:
            empty = url.replace("${trace_id}", "").replace("$trace_id", "")
            assert "/correlate/?" not in empty and not empty.endswith("/correlate/"), (name, url)
        for panel in all_panels(board):
            for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                assert "trace_id}" not in link["url"].replace("${__data.fields.trace_id}", ""), (name, link)


def test_trace_panels_do_not_query_jaeger_with_an_empty_id() -> None:
    """Jaeger answers an empty trace-ID query with an error; a collapsed row runs no query."""
    found = 0
    for name, board in boards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target.get("datasource", {}).get("type") != "jaeger", f"{name}: '{panel['title']}' runs on load"
            if panel["type"] == "row":
                jaeger = [p for p in panel["panels"] if any(t["datasource"]["type"] == "jaeger" for t in p.get("targets", []))]
                found += len(jaeger)
                assert not jaeger or panel["collapsed"], name
    assert found == 1


def correlate_panel() -> dict[str, Any]:
    board = boards()["trace-analysis.json"]
    panels: list[dict[str, Any]] = [p for p in board["panels"] if p["title"].startswith("Correlate trace")]
    assert len(panels) == 1
    return panels[0]


def test_correlate_panel_says_pick_a_trace_and_links_from_its_rows() -> None:
    panel = correlate_panel()
    assert re.search(r"[Pp]ick a trace", panel["fieldConfig"]["defaults"]["noValue"])
    titles = [link["title"] for link in panel["fieldConfig"]["defaults"]["links"]]
    assert any(t.startswith("Correlate") for t in titles) and "Open trace in Explore" in titles


@pytest.mark.integration
def test_correlate_panel_query_has_a_row_only_for_a_given_id(prometheus: Prometheus) -> None:
    """Run on a real Prometheus: no row for an empty box (so no link), one row carrying the ID otherwise."""
    expr = correlate_panel()["targets"][0]["expr"]
    empty = instant(prometheus, expr.replace("$trace_id", "")).json()
    assert empty["status"] == "success" and empty["data"]["result"] == []
    given = instant(prometheus, expr.replace("$trace_id", TRACE_ID)).json()
    assert [r["metric"] for r in given["data"]["result"]] == [{"trace_id": TRACE_ID}]


def test_every_latency_panel_with_exemplars_asks_for_them() -> None:
    latency = [(name, p) for name, b in boards().items() for p in all_panels(b)
               for t in p.get("targets", []) if "_bucket" in t.get("expr", "")]
    assert len(latency) >= 3
    for name, panel in latency:
        assert all(t["exemplar"] for t in panel["targets"]), (name, panel["title"])


def test_provisioning_prunes_datasources_it_no_longer_lists() -> None:
    """`prune` is read by Grafana >= 11.1 (configsV1.Prune, pkg/services/provisioning/datasources/types.go)."""
    assert shipped()["prune"] is True
