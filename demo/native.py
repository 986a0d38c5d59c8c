"""The compose stack without Docker: the same config files, native binaries, loopback only.

One place that knows how to turn docker-compose.yml's services into local processes — used by
`scripts/demo` (a user's stack on the compose ports) and tests/stack (free ports). The shipped
files under stack/, provisioning/ and grafana/ are read, never edited: copies with the compose
service names (`jaeger:4318`, `auth-service:8001` …) rewritten to 127.0.0.1 and the chosen ports
go to a work dir. Each process runs in its own process group with its output in its own log
file, so stopping one stops everything it started, and a failed start names its log.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = [
    "REPO", "Binaries", "Ports", "Service", "Stack", "StackError", "Stopped", "core_services",
    "correlator_env", "correlator_service", "demo_env", "find_binaries", "grafana_files", "grafana_home", "grafana_service", "http_ok",
    "jaeger_binary_path", "jaeger_config", "jaeger_service", "jaeger_version", "loadgen_service", "loki_config", "loki_service", "ports_in_use",
    "prometheus_config", "prometheus_service", "started",
]


class StackError(RuntimeError):
    """Something the user must act on: the message says what failed and where its log is."""


# ------------------------------------------------------------------------------ ports


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port the stack listens on; the defaults are docker-compose.yml's."""

    prometheus: int = 9090
    loki: int = 3100
    loki_grpc: int = 9095  # not published by compose, but a native Loki binds it
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    otlp_grpc: int = 4317
    otlp_http: int = 4318
    jaeger_health: int = 13133
    spanmetrics: int = 8889
    grafana: int = 3000
    correlator: int = 8080
    auth: int = 8001
    courses: int = 8002
    api: int = 3001

    def shifted(self, offset: int) -> Ports:
        """Every port plus `offset` (several stacks side by side, or around a busy port)."""
        moved = {f.name: getattr(self, f.name) + offset for f in dataclasses.fields(self)}
        bad = {name: port for name, port in moved.items() if not 1 <= port <= 65535}
        if bad:
            raise StackError(f"--port-offset {offset} puts {', '.join(f'{k}={v}' for k, v in bad.items())} outside 1-65535")
        return Ports(**moved)

    def items(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


def ports_in_use(ports: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> list[tuple[str, int]]:
    """The (name, port) pairs something already listens on. SO_REUSEADDR, as the servers set it:
    a port held only by connections in TIME_WAIT (a stack stopped a moment ago) counts as free."""
    busy = []
    for name, port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                busy.append((name, port))
    return busy


# ------------------------------------------------------------------------------ binaries


def jaeger_binary_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where scripts/install-jaeger puts (or finds) the Go-built Jaeger v2: $CORRELATOR_JAEGER_BIN,
    else $XDG_CACHE_HOME/correlator/bin/jaeger, else ~/.cache/correlator/bin/jaeger."""
    if environ.get("CORRELATOR_JAEGER_BIN"):
        return Path(environ["CORRELATOR_JAEGER_BIN"])
    cache = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "/tmp")) / ".cache")
    return Path(cache) / "correlator" / "bin" / "jaeger"


@dataclass(frozen=True, slots=True)
class Binaries:
    prometheus: str | None
    jaeger: str | None
    node: str | None
    loki: str | None
    grafana: str | None  # `grafana` (11+) or the older `grafana-server`


def find_binaries(environ: Mapping[str, str] = os.environ) -> Binaries:
    jaeger = jaeger_binary_path(environ)
    path = environ.get("PATH")
    return Binaries(
        prometheus=environ.get("CORRELATOR_PROMETHEUS_BIN") or shutil.which("prometheus", path=path),
        jaeger=str(jaeger) if jaeger.is_file() and os.access(jaeger, os.X_OK) else None,
        node=shutil.which("node", path=path),
        loki=shutil.which("loki", path=path),
        grafana=shutil.which("grafana", path=path) or shutil.which("grafana-server", path=path),
    )


# ------------------------------------------------------------------------------ config files


def _rewrite(text: str, replacements: Sequence[tuple[str, str]], what: str) -> str:
    """Replace each `old` by `new`; an `old` that is missing means the shipped file changed under
    us, and a silently unrewritten address would point a native process at a Docker name."""
    for old, new in replacements:
        if old not in text:
            raise StackError(f"{what}: expected {old!r} in the shipped file; update demo/native.py to match it")
        text = text.replace(old, new)
    return text


def jaeger_config(ports: Ports) -> str:
    """stack/jaeger/config.yml on the given ports. Its listen host and spanmetrics port are env
    knobs (JAEGER_LISTEN_HOST, JAEGER_SPANMETRICS_PORT: see jaeger_service), the rest literal."""
    text = (REPO / "stack/jaeger/config.yml").read_text()
    return _rewrite(text, [(":16686\"", f":{ports.jaeger_query}\""), (":16685\"", f":{ports.jaeger_query_grpc}\""),
                           (":4317\"", f":{ports.otlp_grpc}\""), (":4318\"", f":{ports.otlp_http}\""),
                           (":13133\"", f":{ports.jaeger_health}\""),
                           # Jaeger's own metrics default to localhost:8888, a fixed port two local
                           # Jaegers would fight over (in a container nobody sees it); nothing scrapes them.
                           ("  telemetry:\n", "  telemetry:\n    metrics:\n      level: none\n")], "stack/jaeger/config.yml")


def prometheus_config(ports: Ports, correlator_port: int | None = None) -> str:
    """stack/prometheus/prometheus.yml scraping 127.0.0.1, rules read from the repo.
    `correlator_port`: where the correlator's /metrics is (default ports.correlator)."""
    text = (REPO / "stack/prometheus/prometheus.yml").read_text()
    return _rewrite(text, [("auth-service:8001", f"127.0.0.1:{ports.auth}"), ("course-service:8002", f"127.0.0.1:{ports.courses}"),
                           ("correlator:8080", f"127.0.0.1:{correlator_port or ports.correlator}"),
                           ("jaeger:8889", f"127.0.0.1:{ports.spanmetrics}"),
                           ("/etc/prometheus/rules", str(REPO / "stack/prometheus/rules"))], "stack/prometheus/prometheus.yml")


def loki_config(ports: Ports, data_dir: Path) -> str:
    """stack/loki/loki.yml on the given ports, storing under data_dir instead of /loki."""
    text = (REPO / "stack/loki/loki.yml").read_text()
    text = _rewrite(text, [("http_listen_port: 3100", f"http_listen_port: {ports.loki}\n  http_listen_address: 127.0.0.1\n"
                                                      f"  grpc_listen_port: {ports.loki_grpc}\n  grpc_listen_address: 127.0.0.1"),
                           ("path_prefix: /loki", f"path_prefix: {data_dir}"),
                           ("/loki/chunks", f"{data_dir}/chunks"), ("/loki/rules", f"{data_dir}/rules")], "stack/loki/loki.yml")
    return text


def grafana_files(ports: Ports, root: Path) -> Path:
    """provisioning/ and grafana/dashboards copied under root with the datasources pointing at
    127.0.0.1 and the correlator links at its port; returns the provisioning dir."""
    correlator_link = ("localhost:8080", f"localhost:{ports.correlator}")
    dashboards = root / "dashboards"
    dashboards.mkdir(parents=True)
    for src in sorted((REPO / "grafana/dashboards").glob("*.json")):
        (dashboards / src.name).write_text(src.read_text().replace(*correlator_link))
    provisioning = root / "provisioning"
    (provisioning / "datasources").mkdir(parents=True)
    (provisioning / "dashboards").mkdir()
    datasources = (REPO / "provisioning/datasources/datasources.yaml").read_text()
    (provisioning / "datasources/datasources.yaml").write_text(_rewrite(datasources, [
        ("http://prometheus:9090", f"http://127.0.0.1:{ports.prometheus}"), ("http://loki:3100", f"http://127.0.0.1:{ports.loki}"),
        ("http://jaeger:16686", f"http://127.0.0.1:{ports.jaeger_query}"), correlator_link], "provisioning/datasources/datasources.yaml"))
    providers = (REPO / "provisioning/dashboards/dashboards.yaml").read_text()
    (provisioning / "dashboards/dashboards.yaml").write_text(
        _rewrite(providers, [("/var/lib/grafana/dashboards", str(dashboards))], "provisioning/dashboards/dashboards.yaml"))
    return provisioning


# ------------------------------------------------------------------------------ services


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """GET answered 2xx (anything else, or no answer, is "not yet")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return False


@dataclass(frozen=True, slots=True)
class Service:
    """One process of the stack and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    ready: Callable[[], bool]
    url: str = ""  # shown to the user; "" for a process without one (the load generator)
    env: Mapping[str, str] = field(default_factory=dict)  # the whole environment, not additions
    cwd: Path = REPO
    start_timeout: float = 60.0
    stop_grace: float = 5.0  # SIGTERM, then this long, then SIGKILL to the process group
    backend: bool = False  # stopped after the processes that send it telemetry
    note: str = ""


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def jaeger_service(binary: str, ports: Ports, config: Path) -> Service:
    query = f"http://127.0.0.1:{ports.jaeger_query}"
    env = _base_env({"JAEGER_LISTEN_HOST": "127.0.0.1", "JAEGER_SPANMETRICS_PORT": str(ports.spanmetrics)})
    return Service("jaeger", (binary, "--config", f"file:{config}"),
                   lambda: http_ok(f"http://127.0.0.1:{ports.jaeger_health}/status") and http_ok(f"{query}/api/v3/services"),
                   url=query, env=env, backend=True,
                   # Its graceful stop takes ~10 s with nothing to flush (in-memory store).
                   stop_grace=2.0,
                   note=f"{jaeger_version(binary)}; query API (a Go-built Jaeger has no UI assets: its pages are a placeholder)")


def jaeger_version(binary: str) -> str:
    """What scripts/install-jaeger wrote beside the binary (the binary itself reports none)."""
    stamp = Path(binary + ".version")
    return "Jaeger " + (stamp.read_text().strip() if stamp.is_file() else "(version unknown)")


def prometheus_service(binary: str, ports: Ports, config: Path, data: Path) -> Service:
    url = f"http://127.0.0.1:{ports.prometheus}"
    return Service("prometheus", (binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                                  f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                                  "--enable-feature=exemplar-storage", "--web.enable-lifecycle"),
                   lambda: http_ok(f"{url}/-/ready"), url=url, env=_base_env({}), backend=True)


def demo_env(ports: Ports, with_loki: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """docker-compose.yml's demo-env, on 127.0.0.1. Without Loki there is no log export at all
    (rather than an exporter retrying a closed port on every batch)."""
    env = _base_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.otlp_http}",
                     "AUTH_URL": f"http://127.0.0.1:{ports.auth}", "COURSES_URL": f"http://127.0.0.1:{ports.courses}",
                     **(extra or {})})
    if with_loki:
        env["DEMO_LOKI_OTLP_ENDPOINT"] = f"http://127.0.0.1:{ports.loki}/otlp/v1/logs"
    else:
        env.pop("DEMO_LOKI_OTLP_ENDPOINT", None)
    return env


def core_services(binaries: Binaries, ports: Ports, with_loki: bool, extra_env: Mapping[str, str] | None = None) -> list[Service]:
    """auth-service, course-service and nextgen-api, in start order."""
    if binaries.node is None:
        raise StackError("node is not on PATH (the demo's nextgen-api is Node.js ≥ 20)")
    env = demo_env(ports, with_loki, extra_env)
    services = [
        Service(name, (sys.executable, "-m", f"demo.services.{module}", "--host", "127.0.0.1", "--port", str(port)),
                functools.partial(http_ok, f"http://127.0.0.1:{port}/healthz"), url=f"http://127.0.0.1:{port}", env=env)
        for name, module, port in (("auth-service", "auth_service", ports.auth), ("course-service", "course_service", ports.courses))
    ]
    api = f"http://127.0.0.1:{ports.api}"
    node_env = {**env, "PORT": str(ports.api), "HOST": "127.0.0.1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{ports.otlp_http}/v1/traces"}
    node_env.pop("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", None)
    if with_loki:
        node_env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] = f"http://127.0.0.1:{ports.loki}/otlp/v1/logs"
    services.append(Service("nextgen-api", (binaries.node, "--require", "./tracing.js", "app.js"),
                            lambda: http_ok(f"{api}/healthz"), url=api, env=node_env, cwd=REPO / "demo/nextgen-api",
                            note="/api/courses, /api/courses/7/lessons, /api/enroll, /api/dashboard"))
    return services


def loadgen_service(ports: Ports, rate: float) -> Service:
    """The compose loadgen. "Ready" = still running a moment after start (it has no port)."""
    started = time.monotonic()
    return Service("loadgen", (sys.executable, "-m", "demo.services.loadgen", "--target", f"http://127.0.0.1:{ports.api}",
                               "--rate", str(rate)),
                   lambda: time.monotonic() - started > 1.0, env=_base_env({}), note=f"{rate:g} requests/s to nextgen-api")


def correlator_env(ports: Ports) -> dict[str, str]:
    """docker-compose.yml's correlator environment, on 127.0.0.1."""
    return {
        "CORRELATOR_JAEGER_URL": f"http://127.0.0.1:{ports.jaeger_query}",
        "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{ports.loki}",
        "CORRELATOR_PROMETHEUS_URL": f"http://127.0.0.1:{ports.prometheus}",
        "CORRELATOR_JAEGER_UI_URL": f"http://localhost:{ports.jaeger_query}",
        "CORRELATOR_SERVER_PUBLIC_URL": f"http://localhost:{ports.correlator}",
        "CORRELATOR_GRAFANA_URL": f"http://localhost:{ports.grafana}",
    }


def correlator_service(ports: Ports) -> Service:
    """`correlator serve` from this checkout (python -m from the repo root, so the code beside
    this file runs, not whichever copy pip installed)."""
    url = f"http://127.0.0.1:{ports.correlator}"
    env = _base_env({**correlator_env(ports), "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.otlp_http}",
                     "OTEL_SERVICE_NAME": "correlator"})
    return Service("correlator", (sys.executable, "-m", "correlator", "serve", "--host", "127.0.0.1", "--port", str(ports.correlator)),
                   lambda: http_ok(f"{url}/healthz"), url=url, env=env,
                   note="/correlate/{id}, /exemplars, /metrics, /openapi.json")


def loki_service(binary: str, ports: Ports, config: Path) -> Service:
    url = f"http://127.0.0.1:{ports.loki}"
    # /ready turns 200 only after the ingester joined its (in-memory) ring: ~15 s.
    return Service("loki", (binary, f"-config.file={config}"), lambda: http_ok(f"{url}/ready"), url=url,
                   env=_base_env({}), start_timeout=90.0, backend=True)


def grafana_home(binary: str) -> Path | None:
    """The dir holding conf/defaults.ini: beside bin/ in a tarball, /usr/share/grafana in a package."""
    real = Path(binary).resolve()
    for candidate in (real.parent.parent, Path("/usr/share/grafana")):
        if (candidate / "conf/defaults.ini").is_file():
            return candidate
    return None


def grafana_service(binary: str, ports: Ports, provisioning: Path, data: Path) -> Service:
    home = grafana_home(binary)
    if home is None:
        raise StackError(f"{binary}: cannot find Grafana's home (conf/defaults.ini beside its bin/ or in /usr/share/grafana)")
    url = f"http://127.0.0.1:{ports.grafana}"
    argv = (binary, "server") if Path(binary).name == "grafana" else (binary,)
    env = _base_env({"GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": str(ports.grafana),
                     "GF_PATHS_DATA": str(data), "GF_PATHS_LOGS": str(data / "log"), "GF_PATHS_PLUGINS": str(data / "plugins"),
                     "GF_PATHS_PROVISIONING": str(provisioning),
                     # docker-compose.yml's settings
                     "GF_SECURITY_ADMIN_USER": "admin", "GF_SECURITY_ADMIN_PASSWORD": os.environ.get("GF_ADMIN_PASSWORD", "admin"),
                     "GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"})
    return Service("grafana", (*argv, f"--homepath={home}"), lambda: http_ok(f"{url}/api/health"), url=url, env=env,
                   start_timeout=90.0, backend=True, note="admin / $GF_ADMIN_PASSWORD (default admin)")


# ------------------------------------------------------------------------------ running


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the launcher dies without cleaning up (SIGKILL),
    so no server outlives it. Linux only; elsewhere the launcher's own stop is all there is."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(slots=True)
class _Running:
    service: Service
    proc: subprocess.Popen[bytes]
    log: Path


class Stack:
    """Starts services one after another, each ready before the next; stops them all, process
    groups included, on exit — also when a start fails halfway."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.running: list[_Running] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, service: Service) -> subprocess.Popen[bytes]:
        log = self.log_of(service.name)
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            try:
                proc = subprocess.Popen(service.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=dict(service.env), cwd=service.cwd, start_new_session=True,
                                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            except OSError as exc:
                raise StackError(f"{service.name}: cannot start {service.argv[0]}: {exc}") from exc
        self.running.append(_Running(service, proc, log))
        self._wait_ready(service, proc, log)
        return proc

    def _wait_ready(self, service: Service, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + service.start_timeout
        while True:
            if proc.poll() is not None:
                raise StackError(f"{service.name} exited with code {proc.returncode} before it was ready; "
                                 f"its log, {log}, ends with:\n{_tail(log)}")
            if service.ready():
                return
            if time.monotonic() > deadline:
                where = f" at {service.url}" if service.url else ""
                raise StackError(f"{service.name} was not ready{where} within {service.start_timeout:g} s; "
                                 f"its log, {log}, ends with:\n{_tail(log)}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.running]

    def stop(self) -> list[Stopped]:
        """Stop everything, in two waves: first what sends telemetry (the demo, the correlator),
        so their last spans still reach a live Jaeger instead of timing out against a dead one;
        then the backends. In a wave: SIGTERM every process group at once, SIGKILL each group
        still there after its grace."""
        running, self.running = self.running, []
        stopped: list[Stopped] = []
        for wave in ([r for r in running if not r.service.backend], [r for r in running if r.service.backend]):
            sent = time.monotonic()
            for r in wave:
                _signal_group(r.proc.pid, signal.SIGTERM)
            for r in wave:
                deadline = sent + r.service.stop_grace
                while time.monotonic() < deadline and _group_alive(r.proc):
                    time.sleep(0.05)
                killed = _group_alive(r.proc)
                if killed:
                    _signal_group(r.proc.pid, signal.SIGKILL)
                    r.proc.wait()
                    while _group_alive(r.proc):  # members exit asynchronously after SIGKILL
                        time.sleep(0.02)
                stopped.append(Stopped(r.service.name, time.monotonic() - sent, killed))
        return stopped


@dataclass(frozen=True, slots=True)
class Stopped:
    name: str
    seconds: float  # from SIGTERM to the whole group gone
    killed: bool  # needed SIGKILL after its grace


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    """Any member of the child's process group left? The leader is reaped first: a zombie
    still counts as a member."""
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (empty)"


@contextlib.contextmanager
def started(services: Sequence[Service], log_dir: Path) -> Iterator[Stack]:
    """All services started in order and ready; all stopped on exit."""
    with Stack(log_dir) as stack:
        for service in services:
            stack.start(service)
        yield stack
