"""The config copies scripts/demo runs with: every compose service name replaced by 127.0.0.1 and
the chosen port, nothing else changed, and a shipped file that drifts stops the start loudly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from demo import native
from demo.native import Ports, StackError, grafana_files, jaeger_config, loki_config, prometheus_config

# Compose service names as they appear in host:port or URL form.
COMPOSE_HOST = re.compile(r"\b(?:prometheus|loki|jaeger|grafana|correlator|auth-service|course-service|nextgen-api):\d+")
SHIFTED = Ports().shifted(20_000)


def test_prometheus_scrapes_the_native_processes_and_reads_the_repos_rules() -> None:
    config = yaml.safe_load(prometheus_config(SHIFTED))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"demo": ["127.0.0.1:28001", "127.0.0.1:28002"], "correlator": ["127.0.0.1:28080"],
                       "jaeger-spanmetrics": ["127.0.0.1:28889"]}
    assert config["rule_files"] == [str(native.REPO / "stack/prometheus/rules/*.yml")]
    assert config["storage"]["exemplars"]["max_exemplars"] == 100000  # the rest as shipped


def test_jaeger_listens_on_the_chosen_ports_and_binds_no_fixed_metrics_port() -> None:
    text = jaeger_config(SHIFTED)
    config = yaml.safe_load(text)
    assert config["extensions"]["jaeger_query"]["http"]["endpoint"].endswith(":36686")
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":24318")
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":24317")
    assert config["extensions"]["healthcheckv2"]["http"]["endpoint"].endswith(":33133")
    assert config["service"]["telemetry"]["metrics"] == {"level": "none"}  # else a fixed localhost:8888
    assert config["connectors"]["spanmetrics"]["exemplars"] == {"enabled": True}
    assert not re.search(r":(16686|16685|4317|4318|13133)\"", text)


def test_loki_listens_on_loopback_and_stores_under_the_work_dir(tmp_path: Path) -> None:
    config = yaml.safe_load(loki_config(SHIFTED, tmp_path))
    assert config["server"] == {"http_listen_port": 23100, "http_listen_address": "127.0.0.1",
                                "grpc_listen_port": 29095, "grpc_listen_address": "127.0.0.1"}
    assert config["common"]["path_prefix"] == str(tmp_path)
    assert config["common"]["storage"]["filesystem"] == {"chunks_directory": f"{tmp_path}/chunks", "rules_directory": f"{tmp_path}/rules"}
    assert config["limits_config"]["allow_structured_metadata"] is True


def test_grafana_datasources_and_dashboards_point_at_the_native_stack(tmp_path: Path) -> None:
    provisioning = grafana_files(SHIFTED, tmp_path)
    datasources = {d["uid"]: d for d in yaml.safe_load((provisioning / "datasources/datasources.yaml").read_text())["datasources"]}
    assert datasources["prometheus"]["url"] == "http://127.0.0.1:29090"
    assert datasources["loki"]["url"] == "http://127.0.0.1:23100"
    assert datasources["jaeger"]["url"] == "http://127.0.0.1:36686"
    links = [d["url"] for d in datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] if "/correlate/" in d.get("url", "")]
    assert links and all(link.startswith("http://localhost:28080/correlate/") for link in links)
    provider = yaml.safe_load((provisioning / "dashboards/dashboards.yaml").read_text())["providers"][0]
    dashboards = Path(provider["options"]["path"])
    assert sorted(p.name for p in dashboards.glob("*.json")) == sorted(p.name for p in (native.REPO / "grafana/dashboards").glob("*.json"))
    for path in [*provisioning.rglob("*.yaml"), *dashboards.glob("*.json")]:
        text = path.read_text()
        assert not COMPOSE_HOST.search(text), f"{path.name} still names a compose service"
        assert "localhost:8080" not in text, f"{path.name} links the default correlator port"


def test_a_shipped_file_that_drifted_stops_the_rewrite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "stack/prometheus").mkdir(parents=True)
    shipped = (native.REPO / "stack/prometheus/prometheus.yml").read_text()
    (tmp_path / "stack/prometheus/prometheus.yml").write_text(shipped.replace("jaeger:8889", "jaeger-collector:8889"))
    monkeypatch.setattr(native, "REPO", tmp_path)
    with pytest.raises(StackError, match=r"expected 'jaeger:8889' in the shipped file"):
        prometheus_config(Ports())


def test_a_port_offset_past_65535_is_refused_naming_the_ports() -> None:
    with pytest.raises(StackError, match=r"--port-offset 50000 puts .*jaeger_query=66686"):
        Ports().shifted(50_000)
