"""Offline files written by the real servers: what Jaeger v2 and Prometheus answered, saved and correlated offline.

The online correlation runs through the HTTP API against the real Jaeger, the real Prometheus and
the recorded Loki (as test_end_to_end does); the offline one reads the same answers saved to files.
Both must agree field by field (the v3 encoding); the UI model's file agrees up to the µs it rounds to.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from correlator.cli import main
from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.files import InputFile, read_exemplars, read_trace
from correlator.sources.loki import LokiSource
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration.servers import Jaeger, Prometheus

pytestmark = pytest.mark.integration
SC = scenario()
TRACE = SC["trace_id"]
SERVICES = ["api-gateway", "auth-service", "course-service"]


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    # Where the trace stands in its series is asked of Prometheus' query API live: no file holds it.
    out = {k: v for k, v in body.items() if k not in ("cached", "standing")}
    out["sources"] = {name: {k: v for k, v in src.items() if k != "ms"} for name, src in body["sources"].items()}
    out["exemplars"] = [{k: v for k, v in ex.items() if k != "standing"} for ex in body["exemplars"]]
    return out


async def test_files_saved_from_the_real_servers_correlate_as_the_service_does(
        aiohttp_client: Any, aiohttp_server: Any, jaeger: Jaeger, prometheus: Prometheus, t0: int,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from correlator.api import create_app

    loki = await aiohttp_server(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))
    loki_url = f"http://127.0.0.1:{loki.port}"
    env = {"CORRELATOR_JAEGER_URL": jaeger.query_url, "CORRELATOR_LOKI_URL": loki_url,
           "CORRELATOR_PROMETHEUS_URL": prometheus.url, "CORRELATOR_DEADLINE_SECONDS": "5",
           # A one-trace file cannot say which other requests ran: the service does not ask Jaeger either.
           "CORRELATOR_JOIN_UNTRACED_OVERLAP_CHECK": "false"}
    settings = load_settings(environ=env)
    client = await aiohttp_client(create_app(settings))
    online = await (await client.get(f"/correlate/{TRACE}")).json()
    assert (online["summary"]["span_count"], online["summary"]["log_count"], online["summary"]["exemplar_count"]) == (5, 8, 2)

    # What each server answers, saved as a user would save it.
    v3 = httpx.get(f"{jaeger.query_url}/api/v3/traces/{TRACE}", timeout=5)
    ui = httpx.get(f"{jaeger.query_url}/api/traces/{TRACE}", timeout=5)
    exemplars = httpx.get(f"{prometheus.url}/api/v1/query_exemplars", timeout=5,
                          params={"query": settings.prometheus.exemplar_selector, "start": time.time() - 3600, "end": time.time() + 60})
    assert v3.status_code == ui.status_code == exemplars.status_code == 200
    (tmp_path / "trace.json").write_bytes(v3.content)
    (tmp_path / "trace-ui.json").write_bytes(ui.content)
    (tmp_path / "exemplars.json").write_bytes(exemplars.content)
    window = Window(t0 - 60 * 10**9, t0 + 200 * 10**6 + 60 * 10**9)
    logs = []
    async with make_client(settings.loki) as loki_client:  # only for the queries the service would send
        queries = LokiSource(settings.loki, loki_client).queries(parse_trace_id(TRACE), SERVICES)
    for i, query in enumerate(queries):
        async with httpx.AsyncClient(timeout=5) as http:  # the fake Loki runs on this event loop
            answer = await http.get(f"{loki_url}/loki/api/v1/query_range",
                                    headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"},
                                    params={"query": query, "start": str(window.start_ns), "end": str(window.end_ns),
                                            "limit": "1000"})
        assert answer.status_code == 200
        path = tmp_path / f"loki{i}.json"
        path.write_bytes(answer.content)
        logs.append(str(path))

    config = tmp_path / "config.yaml"
    config.write_text(f"jaeger: {{url: '{jaeger.query_url}'}}\nloki: {{url: '{loki_url}'}}\nprometheus: {{url: '{prometheus.url}'}}\n"
                      "deadline_seconds: 5\njoin: {untraced_overlap_check: false}\n")
    # The command as a user runs it (its own event loop: in a thread beside this test's).
    code = await asyncio.to_thread(main, ["--config", str(config), "correlate", "--trace", str(tmp_path / "trace.json"),
                                          "--logs", *logs, "--exemplars", str(tmp_path / "exemplars.json"), "--format", "json"])
    import json

    offline = json.loads(capsys.readouterr().out)
    assert code == 0
    assert _comparable(offline) == _comparable(online)

    # The UI model's file (µs) is the same trace up to the rounding; Prometheus' file is what the source parsed.
    from_ui = read_trace(InputFile("trace-ui.json", ui.content), None)
    from_v3 = read_trace(InputFile("trace.json", v3.content), None)
    assert {s.span_id: (s.start_ns // 1000, s.end_ns // 1000, s.service) for s in from_ui.spans} == \
           {s.span_id: (s.start_ns // 1000, s.end_ns // 1000, s.service) for s in from_v3.spans}
    mine = [ex for ex in read_exemplars(InputFile("exemplars.json", exemplars.content), settings.prometheus) if ex.trace_id == TRACE]
    assert sorted(ex.id for ex in mine) == sorted(ex["id"] for ex in online["exemplars"])


async def test_the_overlap_search_reads_the_real_jaegers_answer(jaeger: Jaeger, t0: int) -> None:
    """`other_traces` (the untraced lines' `high` evidence) against Jaeger v2: our own spans when not excluded,
    none of them when excluded, and an empty list (known: nothing else) far from any trace."""
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger.query_url}).jaeger
    from correlator.sources.jaeger import JaegerSource

    async with make_client(settings) as client:
        source = JaegerSource(settings, client)
        window = Window(t0, t0 + 145 * 10**6)
        trace = (await source.fetch(parse_trace_id(TRACE), window)).value
        ours = await source.other_traces("auth-service", window, "0" * 32, 50)
        others = await source.other_traces("auth-service", window, TRACE, 50)
        nothing = await source.other_traces("auth-service", Window(t0 - 3600 * 10**9, t0 - 3599 * 10**9), TRACE, 50)
    assert trace is not None
    mine = {(span.start_ns, span.end_ns) for span in trace.spans if span.service == "auth-service"}
    # Other tests of the session send traces of auth-service around this one too: the search window is wider
    # than the trace, so only ours are pinned — all of them found when not excluded, none when excluded.
    assert mine and ours is not None and mine <= set(ours)
    assert others is not None and not mine & set(others)
    assert nothing == []
