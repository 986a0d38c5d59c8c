"""A real Jaeger v2 for the integration tests: in-memory storage, free loopback ports, bounded start.

The binary comes from scripts/install-jaeger (CORRELATOR_JAEGER_BIN, else the cache path that script
uses). A missing binary skips locally and fails in CI (`CI=true`). The config is the built-in
all-in-one one cut down to what the tests use: OTLP/HTTP in, memory storage, the query service
and the healthcheckv2 extension — all on 127.0.0.1, never the all-in-one's fixed ports.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import skip_or_fail
from tests.integration.servers import free_port, running

__all__ = ["JaegerServer", "default_binary", "jaeger_binary", "jaeger_config", "run_jaeger"]

START_TIMEOUT_S = 30  # a cold start is ~1 s here; the margin is for loaded CI machines
# Jaeger's graceful stop takes ~10 s even with an idle memory store (measured, exit 0); nothing
# here needs flushing, so it gets 1 s before the kill.
STOP_GRACE_S = 1


@dataclass(frozen=True, slots=True)
class JaegerServer:
    query_url: str  # query service: UI, /api/v3/*, /api/traces/*
    otlp_url: str  # OTLP/HTTP receiver base; traces go to {otlp_url}/v1/traces
    health_url: str  # healthcheckv2 `/status`
    version: str  # what scripts/install-jaeger wrote beside the binary (the binary itself reports none)


def default_binary() -> Path:
    """Where scripts/install-jaeger puts the binary when CORRELATOR_JAEGER_BIN is not set."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path(os.environ.get("HOME", "/tmp")) / ".cache")
    return Path(cache) / "correlator" / "bin" / "jaeger"


def jaeger_binary() -> Path | None:
    path = Path(os.environ.get("CORRELATOR_JAEGER_BIN") or default_binary())
    return path if path.is_file() and os.access(path, os.X_OK) else None


def jaeger_config(query: int, grpc: int, otlp: int, health: int) -> str:
    """A minimal Jaeger v2 (OTel Collector) config: OTLP/HTTP → memory store → query service."""
    return textwrap.dedent(f"""\
        service:
          extensions: [jaeger_storage, jaeger_query, healthcheckv2]
          pipelines:
            traces:
              receivers: [otlp]
              processors: [batch]
              exporters: [jaeger_storage_exporter]
          telemetry:
            metrics:
              level: none
            logs:
              level: warn
        extensions:
          healthcheckv2:
            use_v2: true
            http:
              endpoint: 127.0.0.1:{health}
          jaeger_query:
            storage:
              traces: memstore
            http:
              endpoint: 127.0.0.1:{query}
            grpc:
              endpoint: 127.0.0.1:{grpc}
          jaeger_storage:
            backends:
              memstore:
                memory:
                  max_traces: 10000
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:{otlp}
        processors:
          batch:
            timeout: 50ms  # the default 200 ms would only slow the tests' polling down
        exporters:
          jaeger_storage_exporter:
            trace_storage: memstore
        """)


@contextmanager
def run_jaeger() -> Iterator[JaegerServer]:
    """Start Jaeger, wait until both health and the query API answer, yield its URLs, stop it."""
    binary = jaeger_binary()
    if binary is None:
        skip_or_fail(f"no Jaeger v2 binary at {os.environ.get('CORRELATOR_JAEGER_BIN') or default_binary()} "
                     "(run scripts/install-jaeger, or set CORRELATOR_JAEGER_BIN)")
        raise AssertionError("unreachable")
    version_file = binary.with_name(binary.name + ".version")
    version = version_file.read_text().strip() if version_file.is_file() else "unknown"
    query, grpc, otlp, health = free_port(), free_port(), free_port(), free_port()
    server = JaegerServer(f"http://127.0.0.1:{query}", f"http://127.0.0.1:{otlp}", f"http://127.0.0.1:{health}/status", version)

    def ready() -> bool:
        return (httpx.get(server.health_url, timeout=1).status_code == 200
                and httpx.get(f"{server.query_url}/api/v3/services", timeout=1).status_code == 200)

    with tempfile.TemporaryDirectory(prefix="jaeger-") as tmp:
        config = Path(tmp) / "jaeger.yaml"
        config.write_text(jaeger_config(query, grpc, otlp, health))
        with running([str(binary), "--config", f"file:{config}"], "jaeger", ready,
                     timeout=START_TIMEOUT_S, grace=STOP_GRACE_S):
            yield server
