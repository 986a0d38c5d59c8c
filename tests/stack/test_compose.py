"""docker-compose.yml, validated statically (no Docker engine runs here).

Against the Compose Specification's JSON schema (the copy the `dclint` npm package ships,
installed by `npm ci` in demo/nextgen-api as a devDependency), then the properties the schema
cannot express: pinned images, healthchecks with tools the images really contain, healthy
dependencies, mounts that exist, and every address agreeing across compose, the Jaeger config,
the Prometheus config, the Loki config and the Grafana provisioning.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO, skip_or_fail

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
JAEGER_CFG = yaml.safe_load((REPO / "stack/jaeger/config.yml").read_text())
PROM_CFG = yaml.safe_load((REPO / "stack/prometheus/prometheus.yml").read_text())
LOKI_CFG = yaml.safe_load((REPO / "stack/loki/loki.yml").read_text())
COMPOSE_SCHEMA = REPO / "demo/nextgen-api/node_modules/dclint/schemas/compose.schema.json"

# What each pulled image has to run a healthcheck with (checked against the images' Dockerfiles):
# prom/prometheus is built on quay.io/prometheus/busybox; grafana/grafana is Alpine;
# jaegertracing/jaeger's base is Alpine (scripts/build/docker/base); grafana/loki up to 3.5.x is
# gcr.io/distroless/static:debug (busybox on PATH) and from 3.6.0 has no shell, wget or curl.
IMAGE_TOOLS = {"prom/prometheus": {"wget"}, "grafana/grafana": {"wget", "curl"}, "jaegertracing/jaeger": {"wget"},
               "grafana/loki": {"wget"}}


def version(tag: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.match(r"v?(\d+)\.(\d+)\.(\d+)", tag).groups())  # type: ignore[union-attr]


def image_of(name: str) -> tuple[str, str]:
    image, _, tag = SERVICES[name]["image"].rpartition(":")
    return image, tag


def command(name: str) -> list[str]:
    cmd = SERVICES[name].get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def flag(name: str, option: str) -> str | None:
    """`--port 8001`, `--port=8001`, `-config.file=…` in a service's command."""
    args = command(name)
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def mounts(name: str) -> dict[str, str]:
    """container path → host source (bind: './…', named volume: its name)."""
    out = {}
    for mount in SERVICES[name].get("volumes", []):
        source, target, *_ = mount.split(":")
        out[target] = source
    return out


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def endpoint_port(endpoint: str) -> int:
    """A Jaeger/collector endpoint like "${env:JAEGER_LISTEN_HOST:-0.0.0.0}:4318" or with a port default."""
    match = re.search(r":(?:(\d+)|\$\{env:[A-Z_]+:-(\d+)\})$", endpoint)
    assert match, endpoint
    return int(match[1] or match[2])


def listen_port(name: str) -> int:
    """The port a service listens on inside the network, from its own config."""
    if name == "jaeger":
        raise AssertionError("jaeger listens on several ports; use JAEGER_PORTS")
    if name == "prometheus":
        return 9090
    if name == "loki":
        return int(LOKI_CFG["server"]["http_listen_port"])
    if name == "grafana":
        return 3000
    if name == "nextgen-api":
        return int(SERVICES[name]["environment"]["PORT"])
    if name == "correlator":
        dockerfile = (REPO / "Dockerfile").read_text()
        return int(re.search(r'"--port", "(\d+)"', dockerfile).group(1))  # type: ignore[union-attr]
    port = flag(name, "--port")
    assert port, f"{name} has no --port"
    return int(port)


JAEGER_PORTS = {
    "query": endpoint_port(JAEGER_CFG["extensions"]["jaeger_query"]["http"]["endpoint"]),
    "otlp_grpc": endpoint_port(JAEGER_CFG["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]),
    "otlp_http": endpoint_port(JAEGER_CFG["receivers"]["otlp"]["protocols"]["http"]["endpoint"]),
    "health": endpoint_port(JAEGER_CFG["extensions"]["healthcheckv2"]["http"]["endpoint"]),
    "spanmetrics": endpoint_port(JAEGER_CFG["exporters"]["prometheus"]["endpoint"]),
}


def test_compose_file_matches_the_compose_spec_schema() -> None:
    if not COMPOSE_SCHEMA.is_file():
        skip_or_fail("the Compose spec schema comes with dclint: run `npm ci` in demo/nextgen-api")
    # jsonschema-rs comes with schemathesis (test extra). Draft 7 named explicitly: the schema's
    # "$schema" lacks the trailing "#" that auto-detection looks for.
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert not errors, errors
    # the schema really bites: an unknown service key is rejected
    broken = {**COMPOSE, "services": {**SERVICES, "loki": {**SERVICES["loki"], "helthcheck": {}}}}
    assert any("helthcheck" in e.message for e in validator.iter_errors(broken))


def test_the_stack_has_every_piece() -> None:
    assert {"prometheus", "loki", "jaeger", "grafana", "correlator", "nextgen-api", "auth-service", "course-service",
            "loadgen"} <= set(SERVICES)


def test_images_are_pinned_and_builds_exist() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "image" in service:
            image, tag = image_of(name)
            assert image and tag and tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (name, service["image"])
        if "build" in service:
            build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
            context = REPO / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), (name, dockerfile)
            text = dockerfile.read_text()
            for base in re.findall(r"^FROM\s+(\S+)", text, re.M):
                assert ":" in base and not base.endswith(":latest"), (dockerfile, base)
            for line in re.findall(r"^COPY\s+(.+)$", text, re.M):  # every COPY source exists in the context
                for source in line.split()[:-1]:
                    if not source.startswith("--"):
                        assert (context / source).exists(), (dockerfile, source)


def test_jaeger_is_v2_20_with_the_seeds_ports() -> None:
    jaeger = SERVICES["jaeger"]
    assert jaeger["image"] == "jaegertracing/jaeger:2.20.0"
    published = {int(p.rsplit(":", 1)[1]) for p in jaeger["ports"]}
    assert published == {16686, 4317, 4318}
    assert (JAEGER_PORTS["query"], JAEGER_PORTS["otlp_grpc"], JAEGER_PORTS["otlp_http"]) == (16686, 4317, 4318)
    # the config file compose mounts is the one the command loads
    [config] = [c.removeprefix("file:") for c in command("jaeger") if c.startswith("file:")]
    assert mounts("jaeger")[config] == "./stack/jaeger/config.yml"


def test_every_service_has_a_healthcheck_that_its_image_can_run() -> None:
    for name, service in SERVICES.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        tool = test[1] if test[0] == "CMD" else shlex.split(test[1])[0]
        if "image" in service:
            image, tag = image_of(name)
            assert tool in IMAGE_TOOLS[image], (name, tool)
            if image == "grafana/loki":
                assert version(tag) < (3, 6, 0), "grafana/loki ≥ 3.6.0 has no wget: change the healthcheck"
        else:
            # The image runs its last stage (a multi-stage build's earlier ones only make files for it).
            base = re.findall(r"^FROM\s+(\S+)", (REPO / (service["build"]["dockerfile"] if isinstance(service["build"], dict)
                                                          else service["build"] + "/Dockerfile")).read_text(), re.M)[-1]
            assert tool == ("python" if base.startswith("python:") else "node"), (name, tool, base)
        # the probed port is the one the service listens on
        urls = re.findall(r"https?://[^\s'\"]+", " ".join(test[1:]))
        for url in urls:
            expected = JAEGER_PORTS["health"] if name == "jaeger" else listen_port(name)
            assert host_port(url) in (("localhost", expected), ("127.0.0.1", expected)), (name, url)


def test_dependencies_wait_for_healthy_services_without_cycles() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' → '.join((*path, name))}"
        if name not in seen:
            for dependency in SERVICES[name].get("depends_on", {}):
                visit(dependency, (*path, name))
            seen.add(name)

    for name in SERVICES:
        visit(name, ())
    # what calls what also waits for it
    assert {"auth-service", "course-service"} <= set(SERVICES["nextgen-api"]["depends_on"])
    assert {"jaeger", "loki", "prometheus"} <= set(SERVICES["correlator"]["depends_on"])
    assert {"jaeger", "loki", "prometheus"} <= set(SERVICES["grafana"]["depends_on"])


def test_mounted_files_exist_and_volumes_are_named() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used = set()
    for name in SERVICES:
        for target, source in mounts(name).items():
            assert target.startswith("/"), (name, target)
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


def test_published_ports_are_loopback_only_and_match_what_listens() -> None:
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            parts = str(mapping).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name} publishes {mapping} on every interface"
            _bind, host, container = parts
            assert host == container
            if name != "jaeger":
                assert int(container) == listen_port(name), (name, mapping)


def test_grafana_password_comes_from_the_environment() -> None:
    env = SERVICES["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GF_ADMIN_PASSWORD:-[^}]*\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    for name, service in SERVICES.items():  # no other literal secret anywhere
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert str(value).startswith("${"), (name, key)


def test_prometheus_loads_what_compose_mounts_and_stores_exemplars() -> None:
    assert "--enable-feature=exemplar-storage" in command("prometheus")
    prom_mounts = mounts("prometheus")
    assert prom_mounts[flag("prometheus", "--config.file")] == "./stack/prometheus/prometheus.yml"
    assert prom_mounts[flag("prometheus", "--storage.tsdb.path")] in COMPOSE["volumes"]
    for pattern in PROM_CFG["rule_files"]:
        directory = str(Path(pattern).parent)
        assert prom_mounts[directory] == "./stack/prometheus/rules"
        assert list((REPO / "stack/prometheus/rules").glob(Path(pattern).name)), pattern


def test_prometheus_scrapes_every_metrics_port_that_exists() -> None:
    targets = {t for job in PROM_CFG["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in SERVICES, target
        expected = JAEGER_PORTS["spanmetrics"] if host == "jaeger" else listen_port(host)
        assert int(port) == expected, target
    assert {"auth-service", "course-service", "correlator", "jaeger"} <= {t.split(":")[0] for t in targets}


def test_loki_config_is_what_compose_loads() -> None:
    assert mounts("loki")[flag("loki", "-config.file")] == "./stack/loki/loki.yml"
    assert mounts("loki")[LOKI_CFG["common"]["path_prefix"]] in COMPOSE["volumes"]
    assert LOKI_CFG["limits_config"]["allow_structured_metadata"] is True
    assert LOKI_CFG["schema_config"]["configs"][-1]["schema"] == "v13"  # structured metadata needs v13 + tsdb
    assert LOKI_CFG["schema_config"]["configs"][-1]["store"] == "tsdb"


def test_every_address_in_the_environment_points_at_a_listening_port() -> None:
    """OTLP, Loki, Jaeger, Prometheus and service URLs in env/commands agree with the servers' configs."""
    env = SERVICES["correlator"]["environment"]
    assert (env["CORRELATOR_JAEGER_URL"], env["CORRELATOR_LOKI_URL"], env["CORRELATOR_PROMETHEUS_URL"]) == (
        "http://jaeger:16686", "http://loki:3100", "http://prometheus:9090")
    for name in ("auth-service", "course-service"):
        demo = SERVICES[name]["environment"]
        assert demo["DEMO_LOKI_OTLP_ENDPOINT"] == "http://loki:3100/otlp/v1/logs"
        assert demo["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert SERVICES["nextgen-api"]["environment"]["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://jaeger:4318/v1/traces"

    urls = [(name, str(v)) for name, s in SERVICES.items() for v in (s.get("environment") or {}).values()
            if str(v).startswith("http://")]
    urls += [(name, a) for name in SERVICES for a in command(name) if a.startswith("http://")]
    for name, url in urls:
        host, port = host_port(url)
        if host in ("localhost", "127.0.0.1"):
            continue  # links for the browser (published ports), checked above
        assert host in SERVICES, (name, url)
        allowed = set(JAEGER_PORTS.values()) if host == "jaeger" else {listen_port(host)}
        assert port in allowed, (name, url)

    provisioning = yaml.safe_load((REPO / "provisioning/datasources/datasources.yaml").read_text())
    urls_by_type = {ds["type"]: ds["url"] for ds in provisioning["datasources"]}
    assert urls_by_type == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100", "jaeger": "http://jaeger:16686"}


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:25])
    assert "docker compose up -d" in first_screen and "scripts/test" in first_screen
    assert (REPO / ".ci/run").read_text().strip().endswith("exec scripts/test")


def test_no_paths_of_this_machine_in_the_stack() -> None:
    """Config files must work on any checkout: no absolute path of the machine they were written on."""
    home, checkout = str(Path.home()), str(REPO.parent)
    files = [*(REPO / "stack").rglob("*"), *(p for p in (REPO / "demo").rglob("*") if "node_modules" not in p.parts),
             REPO / "docker-compose.yml", REPO / "Dockerfile"]
    for path in files:
        if path.is_file() and path.suffix not in (".pyc",):
            text = path.read_text(errors="replace")
            assert home not in text and checkout not in text, path
