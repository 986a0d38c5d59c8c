"""A real process exposing OpenMetrics exemplars, for Prometheus to scrape in the tests.

Exemplars only on `_bucket` and `_total` samples: Debian's Prometheus 2.42 fails the whole
scrape otherwise. prometheus_client writes them only in OpenMetrics, chosen by the scraper's
Accept header, which Prometheus sends.
"""

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

registry = CollectorRegistry()
duration = Histogram("http_server_duration_seconds", "Request latency.", ("service", "route"),
                     buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0), registry=registry)
requests = Counter("http_requests", "Requests.", ("service", "route"), registry=registry)

traces = dict(pair.split("=", 1) for pair in os.environ["EXPOSER_TRACES"].split(","))
for i, (name, ids) in enumerate(sorted(traces.items())):
    trace_id, _, span_id = ids.partition("/")  # "trace[/span]"
    exemplar = {"trace_id": trace_id, "span_id": span_id or f"{i + 1:016x}"}
    duration.labels("api-gateway", f"/{name}").observe(0.145 + i * 0.2, exemplar=exemplar)
    requests.labels("api-gateway", f"/{name}").inc(exemplar=exemplar)

start_http_server(int(os.environ["EXPOSER_PORT"]), addr="127.0.0.1", registry=registry)
while True:
    time.sleep(3600)
