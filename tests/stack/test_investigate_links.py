"""The alert's and the RED dashboard's investigate links reach /investigate with a valid request.

The alert annotation is checked as promtool renders it (the unit test's expected annotation,
which `test_prometheus_config` proves promtool produces); the dashboard link with Grafana's
variables substituted the way Grafana does.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml

from correlator.config import load_settings
from correlator.investigate_api import parse_request

REPO = Path(__file__).resolve().parents[2]
NOW_NS = 1_795_572_505_000_000_000


def request_of(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def test_the_alert_notification_carries_the_investigate_link_for_its_series() -> None:
    tests = yaml.safe_load((REPO / "stack/prometheus/tests/trace-alerts.test.yml").read_text())
    [firing] = [t for t in tests["tests"][0]["alert_rule_test"] if t["exp_alerts"]]
    annotations = firing["exp_alerts"][0]["exp_annotations"]
    path, params = request_of(annotations["investigate"])
    assert path == "/investigate"
    request = parse_request(params, load_settings(environ={}), NOW_NS)
    assert request.query == ('traces_span_metrics_duration_milliseconds_bucket'
                             '{service_name="nextgen-api",span_kind="SPAN_KIND_SERVER"}')
    assert request.threshold == 2000 and params["format"] == "text"  # slow = above the alert's 2 s, in ms


def test_the_red_dashboard_links_to_an_investigation_of_its_histogram_and_time_range() -> None:
    red = json.loads((REPO / "grafana/dashboards/red.json").read_text())
    [link] = [x for x in red["links"] if x["title"].startswith("Investigate")]
    url = (link["url"].replace("${service:pipe}", "api-gateway|course-service")
           .replace("${__from}", "1795568905000").replace("${__to}", "1795572505000"))
    path, params = request_of(url)
    request = parse_request(params, load_settings(environ={}), NOW_NS)
    assert path == "/investigate"
    assert request.query == 'http_server_duration_seconds_bucket{service=~"api-gateway|course-service"}'
    assert (request.window.start_ns, request.window.end_ns) == (1795568905 * 10**9, 1795572505 * 10**9)
    panels = [p["targets"][0]["expr"] for p in red["panels"]]
    assert any("http_server_duration_seconds_bucket" in expr and "$service" in expr for expr in panels)
