"""promtool on the shipped Prometheus config and the seed's alert (Debian's prometheus 2.42)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, skip_or_fail

RULES = REPO / "stack/prometheus/rules"


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail("promtool is not installed (Debian package prometheus)")
    return str(path)


def run(*args: str, cwd: Path = REPO) -> str:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_config_is_valid(promtool: str, tmp_path: Path) -> None:
    """The shipped file, with only the rules path adapted to where the repo is."""
    text = (REPO / "stack/prometheus/prometheus.yml").read_text().replace("/etc/prometheus/rules", str(RULES))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    out = run(promtool, "check", "config", str(config))
    assert "SUCCESS" in out and "1 rules found" in out


def test_rules_are_valid(promtool: str) -> None:
    assert "SUCCESS: 1 rules found" in run(promtool, "check", "rules", str(RULES / "trace-alerts.yml"))


def test_alert_fires_and_does_not_fire(promtool: str) -> None:
    """3 s requests on nextgen-api fire after 5 m; 50 ms course-service and slow client spans never do."""
    assert "SUCCESS" in run(promtool, "test", "rules", "trace-alerts.test.yml", cwd=RULES.parent / "tests")


def spanmetrics_names() -> tuple[str, str, float]:
    """(duration bucket metric, calls metric, seconds→unit factor) as Jaeger's config makes them.

    The spanmetrics connector's defaults (opentelemetry-collector-contrib,
    connector/spanmetricsconnector/factory.go): namespace "traces.span.metrics", histogram unit
    "ms". Its metrics are "<namespace>.duration" (histogram, unit ms|s) and "<namespace>.calls"
    (sum); the prometheus exporter turns dots into underscores and appends the unit and type
    suffixes: …_duration_milliseconds_bucket and …_calls_total.
    """
    import yaml

    config = yaml.safe_load((REPO / "stack/jaeger/config.yml").read_text())
    spanmetrics = config["connectors"]["spanmetrics"] or {}
    namespace = spanmetrics.get("namespace", "traces.span.metrics").replace(".", "_")
    unit = (spanmetrics.get("histogram") or {}).get("unit", "ms")
    suffix, factor = {"ms": ("milliseconds", 1000.0), "s": ("seconds", 1.0)}[unit]
    assert config["exporters"]["prometheus"].get("add_metric_suffixes", True) is not False
    return f"{namespace}_duration_{suffix}_bucket", f"{namespace}_calls_total", factor


def test_alert_reads_the_metric_jaeger_produces_with_the_seeds_threshold() -> None:
    import yaml

    bucket, calls, factor = spanmetrics_names()
    assert bucket == "traces_span_metrics_duration_milliseconds_bucket"
    [rule] = yaml.safe_load((RULES / "trace-alerts.yml").read_text())["groups"][0]["rules"]
    assert rule["alert"] == "HighLatencyTrace" and rule["for"] == "5m" and rule["labels"]["severity"] == "warning"
    expr = " ".join(rule["expr"].split())
    assert f"rate({bucket}" in expr and "histogram_quantile(0.95" in expr and "[5m]" in expr
    assert "service_name" in expr  # the connector's label (the seed's `service` label does not exist)
    threshold = float(re.search(r">\s*([0-9.]+)\s*$", expr).group(1))  # type: ignore[union-attr]
    assert threshold == 2 * factor  # "P95 latency above 2s"
    # Grafana's trace→metrics links query the same names
    provisioning = (REPO / "provisioning/datasources/datasources.yaml").read_text()
    assert bucket in provisioning and calls in provisioning
