"""docker-compose.yml, validated statically (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_the_stack_has_every_piece() -> None:
    assert {"prometheus", "loki", "jaeger", "grafana", "correlator", "nextgen-api", "auth-service", "course-service",
            "loadgen"} <= set(SERVICES)


def test_images_are_pinned_and_builds_exist() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "image" in service:
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest" and re.match(r"v?\d+\.\d+\.\d+", tag), (name, service["image"])
        if "build" in service:
            build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
            context = REPO / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file() or (REPO / build.get("dockerfile", "")).is_file(), name


def test_jaeger_is_v2_20_with_the_seeds_ports() -> None:
    jaeger = SERVICES["jaeger"]
    assert jaeger["image"] == "jaegertracing/jaeger:2.20.0"
    assert {"16686:16686", "4317:4317", "4318:4318"} <= set(jaeger["ports"])


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_mounted_files_exist_and_volumes_are_named() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_grafana_password_comes_from_the_environment() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GF_ADMIN_PASSWORD")


def test_prometheus_stores_exemplars_and_scrapes_what_exists() -> None:
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"]
    prom = yaml.safe_load((REPO / "stack/prometheus/prometheus.yml").read_text())
    for job in prom["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in SERVICES, target
            commands = " ".join(map(str, SERVICES[host].get("command", []))) + " " + str(SERVICES[host].get("environment", ""))
            assert port in commands or host in ("correlator", "jaeger"), target
    jaeger = (REPO / "stack/jaeger/config.yml").read_text()
    assert "8889" in jaeger and "jaeger:8889" in str(prom)


def test_correlator_and_demo_point_at_the_stack() -> None:
    env = SERVICES["correlator"]["environment"]
    assert (env["CORRELATOR_JAEGER_URL"], env["CORRELATOR_LOKI_URL"], env["CORRELATOR_PROMETHEUS_URL"]) == (
        "http://jaeger:16686", "http://loki:3100", "http://prometheus:9090")
    assert SERVICES["auth-service"]["environment"]["DEMO_LOKI_OTLP_ENDPOINT"] == "http://loki:3100/otlp/v1/logs"
    assert SERVICES["nextgen-api"]["environment"]["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://jaeger:4318/v1/traces"
    provisioning = yaml.safe_load((REPO / "provisioning/datasources/datasources.yaml").read_text())
    urls = {ds["type"]: ds["url"] for ds in provisioning["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100", "jaeger": "http://jaeger:16686"}


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:25])
    assert "docker compose up -d" in first_screen and "scripts/test" in first_screen
    assert (REPO / ".ci/run").read_text().strip().endswith("exec scripts/test")


def test_no_paths_of_this_machine_in_the_stack() -> None:
    """Config files must work on any checkout: no absolute path of the machine they were written on."""
    home, checkout = str(Path.home()), str(REPO.parent)
    for path in list((REPO / "stack").rglob("*")) + [REPO / "docker-compose.yml", REPO / "Dockerfile"]:
        if path.is_file():
            text = path.read_text()
            assert home not in text and checkout not in text, path
