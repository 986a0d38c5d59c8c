"""Record a real Prometheus exemplar answer for the Node tests of Grafana's exemplar links.

    python3 -m tests.integration.record_exemplars

Starts the integration tests' real Prometheus (Debian 2.42, exemplar storage) scraping the
real OpenMetrics exposer, asks /api/v1/query_exemplars for the p95 panel's histogram the way
Grafana's backend does, and writes the request and the answer, unchanged, under
tests/fixtures/recorded/prometheus/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.integration.servers import prometheus_server

OUT = Path(__file__).resolve().parents[1] / "fixtures/recorded/prometheus/query_exemplars.histogram.json"
QUERY = 'histogram_quantile(0.95, sum by (le, service) (rate(http_server_duration_seconds_bucket{service=~".+"}[1m])))'


def main() -> None:
    with prometheus_server() as prometheus:
        params = {"query": QUERY, "start": f"{time.time() - 600:.3f}", "end": f"{time.time() + 60:.3f}"}
        response = httpx.get(f"{prometheus.url}/api/v1/query_exemplars", params=params, timeout=10)
        response.raise_for_status()
        version = httpx.get(f"{prometheus.url}/api/v1/status/buildinfo", timeout=5).json()["data"]["version"]
    record = {"prometheus_version": version, "request": {"path": "/api/v1/query_exemplars", "params": params},
              "response": {"status": response.status_code, "body": response.json()}}
    OUT.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
