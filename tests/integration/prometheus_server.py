"""Prometheus helpers for the integration tests beyond the shared exemplar Prometheus.

The shared session fixture `prometheus` (tests/integration/conftest.py → servers.prometheus_server)
is the exemplar source under test: a prometheus_client process (exemplar_app.py) scraped by
Debian's Prometheus 2.42 with exemplar storage on. This module adds what one test needs on top:
a second Prometheus scraping a target that puts an exemplar on a *gauge*, to pin down 2.42's
behaviour (reference/backend-apis.md §3.4: the whole scrape fails).

Cost note: a fresh Prometheus 2.42 answers /-/ready within ~0.1 s but applies its scrape targets
only on the scrape manager's first 5-second reload tick, so a new one needs ~5-6 s before its
first scrape. `gauge_scrape` therefore starts without waiting and is meant to be requested
(autouse, session scope) before the shared fixture, so that both waits overlap.
"""

from __future__ import annotations

import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.integration.servers import free_port, prometheus_binary, running, wait_until

__all__ = ["GAUGE_EXPOSITION", "ScrapeProbe", "first_target", "gauge_scrape", "prometheus_scraping",
           "serve_openmetrics", "up_value"]

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Written by hand: prometheus_client offers no exemplar on a Gauge (and its OpenMetrics writer
# raises ValueError for one), but other producers do write such lines, and 2.42 rejects them.
GAUGE_EXPOSITION = textwrap.dedent("""\
    # TYPE queue_depth gauge
    queue_depth 3 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 3 1795572505.175
    # EOF
    """).encode()


@dataclass(frozen=True)
class ScrapeProbe:
    url: str  # the Prometheus
    target: str  # host:port of the one target it scrapes


@contextmanager
def serve_openmetrics(body: bytes) -> Iterator[str]:
    """A loopback HTTP server answering every GET with `body` as OpenMetrics; yields host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", OPENMETRICS)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="openmetrics-target", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def prometheus_scraping(target: str, job: str = "probe") -> Iterator[str]:
    """A Prometheus (exemplar storage on, 1 s interval) scraping `target`; yields its URL once ready.

    Ready means the HTTP API answers — not that the target was scraped yet (see `first_target`).
    """
    binary = prometheus_binary()
    if binary is None:
        skip_or_fail("no prometheus binary (apt-get install prometheus, or set CORRELATOR_PROMETHEUS_BIN)")
        raise AssertionError("unreachable")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(textwrap.dedent(f"""\
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: {job}
                static_configs:
                  - targets: ["{target}"]
            """))
        cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
               f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"]
        with running(cmd, f"prometheus ({job})", lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200):
            yield url


def first_target(url: str, timeout: float = 15) -> dict[str, Any]:
    """The only active target once it has been scraped at least once (`health` no longer "unknown")."""
    found: dict[str, Any] = {}

    def scraped() -> bool:
        targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        if targets and targets[0]["health"] != "unknown":
            found.update(targets[0])
            return True
        return False

    wait_until(scraped, timeout, "first scrape of the probe target")
    return found


def up_value(url: str, timeout: float = 5) -> str:
    """The latest `up` sample of the probe job, as Prometheus prints it ("0" or "1")."""
    value: list[str] = []

    def present() -> bool:
        result = httpx.get(f"{url}/api/v1/query", params={"query": 'up{job="probe"}', "time": time.time()},
                           timeout=2).json()["data"]["result"]
        value[:] = [sample["value"][1] for sample in result]
        return bool(value)

    wait_until(present, timeout, "an `up` sample for the probe job")
    return value[0]


@pytest.fixture(scope="session")
def gauge_scrape() -> Iterator[ScrapeProbe]:
    """A Prometheus scraping a target whose gauge carries an exemplar; does not wait for the scrape."""
    with serve_openmetrics(GAUGE_EXPOSITION) as target, prometheus_scraping(target) as url:
        yield ScrapeProbe(url, target)
