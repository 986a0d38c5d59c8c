"""The Python demo services, run natively (subprocess on free loopback ports).

1. /metrics in OpenMetrics carries exemplars {trace_id, span_id} on `_bucket` and `_total`
   samples only: Prometheus 2.42 fails the whole scrape when an exemplar sits on any other
   sample (see the integration tests), and only OpenMetrics can carry them at all.
2. What the services export over OTLP/HTTP is what Jaeger and Loki need: spans with W3C IDs
   and `db.*` attributes (the N+1 path is 12 sequential SELECT spans), log records in protobuf
   (Loki's `/otlp/v1/logs` takes application/x-protobuf or application/json) whose trace and
   span IDs equal the ones in the log body and in the exemplar.
3. Log bodies: course-service JSON, auth-service logfmt, both with trace_id/span_id.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
_LABELS = r'\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}'  # label values may contain "}" (route templates)
EXEMPLAR = re.compile(rf"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:{_LABELS})? \S+ # (?P<labels>{_LABELS}) \S+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def demo_service(module: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`python -m demo.services.<module> --host 127.0.0.1 --port N`, stdout+stderr to `log`."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DEMO_"))}
    full_env.update(env)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", f"demo.services.{module}", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            def up() -> bool:
                assert proc.poll() is None, f"{module} exited: {log.read_text(errors='replace')[-2000:]}"
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            wait_until(up, 20, f"{module} to answer /healthz")
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def closed_endpoints() -> dict[str, str]:
    """OTLP endpoints on a port nobody listens on: exports fail quietly, the service keeps serving."""
    closed = f"http://127.0.0.1:{free_port()}"
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": closed, "DEMO_LOKI_OTLP_ENDPOINT": f"{closed}/otlp/v1/logs"}


def exemplar_lines(text: str) -> list[tuple[str, dict[str, str]]]:
    found = []
    for line in text.splitlines():
        if " # {" in line:
            match = EXEMPLAR.match(line)
            assert match, f"unparseable exemplar line: {line}"
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', match["labels"]))
            found.append((match["name"], labels))
    return found


def test_exemplars_only_on_bucket_and_total_samples(tmp_path: Path) -> None:
    with demo_service("course_service", closed_endpoints(), tmp_path / "course.log") as base:
        assert httpx.get(f"{base}/courses", timeout=5).status_code == 200
        assert httpx.get(f"{base}/courses/3/lessons", timeout=5).status_code == 200
        failed = httpx.post(f"{base}/enroll", timeout=5)
        assert failed.status_code == 500 and "seat limit" in failed.json()["error"]

        response = httpx.get(f"{base}/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        text = response.text
        assert text.rstrip().endswith("# EOF")
        exemplars = exemplar_lines(text)
        assert exemplars, text
        for name, labels in exemplars:
            assert name.endswith(("_bucket", "_total")), f"exemplar on {name}: Prometheus 2.42 would fail the scrape"
            assert set(labels) == {"trace_id", "span_id"}, labels
            assert re.fullmatch(r"[0-9a-f]{32}", labels["trace_id"]) and labels["trace_id"] != "0" * 32
            assert re.fullmatch(r"[0-9a-f]{16}", labels["span_id"]) and labels["span_id"] != "0" * 16
        names = {name for name, _ in exemplars}
        assert {"http_server_duration_seconds_bucket", "http_requests_total"} <= names
        # Routes are templates (bounded cardinality), statuses include the error path.
        assert 'route="/courses/{course_id}/lessons"' in text and 'status="500"' in text
        assert not any(line.startswith(("http_server_duration_seconds_created", "http_requests_created")) and " # {" in line
                       for line in text.splitlines())

        # The classic text format cannot carry exemplars: without the Accept header there are none.
        plain = httpx.get(f"{base}/metrics", timeout=5)
        assert plain.headers["content-type"].startswith("text/plain") and " # {" not in plain.text


class _Capture(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def otlp_collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (_Capture,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_otlp_spans_and_logs_carry_the_exemplars_ids(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.proto")
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    with otlp_collector() as (collector, received):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "DEMO_LOKI_OTLP_ENDPOINT": f"{collector}/otlp/v1/logs",
               "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100"}
        with demo_service("course_service", env, tmp_path / "course.log") as base:
            assert httpx.get(f"{base}/courses/3/lessons", timeout=5).status_code == 200
            metrics = httpx.get(f"{base}/metrics", headers={"Accept": OPENMETRICS}, timeout=5).text
            [exemplar] = [labels for name, labels in exemplar_lines(metrics)
                          if name == "http_server_duration_seconds_bucket"]

            def exported(path: str) -> list[Any]:
                """(resource, span or log record) pairs from every export received on `path`."""
                out = []
                for got, _ctype, body in list(received):
                    if got == path == "/v1/traces":
                        request = ExportTraceServiceRequest.FromString(body)
                        out += [(rs.resource, s) for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
                    elif got == path == "/otlp/v1/logs":
                        request = ExportLogsServiceRequest.FromString(body)
                        out += [(rl.resource, r) for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
                return out

            def spans() -> list[Any]:
                return exported("/v1/traces")

            def logs() -> list[Any]:
                return exported("/otlp/v1/logs")

            wait_until(lambda: len(spans()) >= 13 and len(logs()) >= 1, 15, "spans and logs exported over OTLP/HTTP")

    assert {ctype for path, ctype, _ in received if path in ("/v1/traces", "/otlp/v1/logs")} == {"application/x-protobuf"}
    trace_id = exemplar["trace_id"]
    mine = [s for _res, s in spans() if s.trace_id.hex() == trace_id]
    server = [s for s in mine if s.kind == s.SPAN_KIND_SERVER]
    assert len(server) == 1 and server[0].span_id.hex() == exemplar["span_id"], "the exemplar names the server span"
    selects = [s for s in mine if s.kind == s.SPAN_KIND_CLIENT]
    attributes = [{a.key: a.value.string_value for a in s.attributes} for s in selects]
    assert len(selects) == 12 and all(a["db.system"] == "postgresql" for a in attributes)
    assert all(a["db.statement"].startswith("SELECT * FROM lessons WHERE course_id = 3") for a in attributes)
    assert all(s.parent_span_id == server[0].span_id for s in selects)
    # sequential, as an N+1 is: each SELECT starts after the previous one ended
    ordered = sorted(selects, key=lambda s: s.start_time_unix_nano)
    assert all(b.start_time_unix_nano >= a.end_time_unix_nano for a, b in itertools.pairwise(ordered))

    [(resource, record)] = [(res, r) for res, r in logs() if r.trace_id.hex() == trace_id]
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "course-service"
    body = json.loads(record.body.string_value)  # course-service writes JSON bodies
    assert body["trace_id"] == trace_id == record.trace_id.hex()
    assert body["span_id"] == record.span_id.hex() == exemplar["span_id"]
    assert body["msg"] == "listing lessons one by one" and record.severity_text == "INFO"


def test_log_bodies_json_and_logfmt_on_stdout(tmp_path: Path) -> None:
    ids = re.compile(r"trace_id[\"=:\s]+\"?(?P<trace>[0-9a-f]{32})\"?.*span_id[\"=:\s]+\"?(?P<span>[0-9a-f]{16})")
    with demo_service("course_service", closed_endpoints(), tmp_path / "course.log") as base:
        assert httpx.get(f"{base}/courses", timeout=5).status_code == 200
    with demo_service("auth_service", closed_endpoints(), tmp_path / "auth.log") as base:
        assert httpx.get(f"{base}/validate", timeout=5).status_code == 200

    course = [json.loads(line) for line in (tmp_path / "course.log").read_text().splitlines() if line.startswith("{")]
    slow = next(line for line in course if line["msg"] == "slow query")
    assert re.fullmatch(r"[0-9a-f]{32}", slow["trace_id"]) and re.fullmatch(r"[0-9a-f]{16}", slow["span_id"])

    auth = [line for line in (tmp_path / "auth.log").read_text().splitlines() if line.startswith("level=")]
    validated = next(line for line in auth if 'msg="token validated"' in line)
    assert ids.search(validated) and re.search(r"\btrace_id=[0-9a-f]{32}\b", validated), validated
