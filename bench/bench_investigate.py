"""Investigate benchmarks (issue 15). Ratios within one run; medians of the repeats.

    python bench/bench_investigate.py cost [--quick]   investigate of 20 traces ÷ one correlation, and the
                                                     backend requests of one investigation: real Jaeger v2 +
                                                     real Prometheus + recorded Loki, each answering 50 ms late
    python bench/bench_investigate.py rss              peak RSS of one process investigating 20 traces of 1k spans
                                                     (backends in another process, answering at once)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LATENCY_S = 0.05
QUERY = 'http_server_duration_seconds_bucket{job="investigate",route="/api/courses"}'


def cost(quick: bool) -> None:
    import aiohttp
    import httpx
    from aiohttp import web

    from correlator.config import load_settings
    from correlator.correlate import Correlator
    from correlator.ids import parse_trace_id
    from correlator.investigate_run import Request, investigate
    from correlator.model import Window
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource
    from correlator.untraced_share import SharedLookups
    from tests.fakes.loki import REQUESTS, make_fake_loki_app
    from tests.integration import investigation_data as data
    from tests.integration.prometheus_server import prometheus_scraping, serve_openmetrics
    from tests.integration.servers import free_port, jaeger_server, wait_until

    runs = 5 if quick else 20
    # Whole seconds: the shared untraced lookups align their windows to seconds (untraced_share.aligned), so
    # whether a trace's window falls inside the early one must not depend on the clock's fraction (CI saw 3 or 4).
    now = time.time_ns() // 10**9 * 10**9
    reqs = data.requests(now)
    with jaeger_server() as jaeger, serve_openmetrics(data.exposition(reqs)) as target, \
            prometheus_scraping(target, job="investigate") as prom_url:
        data.send(jaeger.otlp_url, reqs)
        wait_until(lambda: sum(len(s["exemplars"]) for s in httpx.get(
            f"{prom_url}/api/v1/query_exemplars", params={"query": QUERY, "start": now / 1e9 - 3600, "end": now / 1e9 + 60},
            timeout=2).json().get("data") or ()) == len(reqs), 30, "exemplars scraped")
        time.sleep(1)
        counts: Counter[str] = Counter()

        def delayed(name: str, upstream: str) -> web.Application:
            """The real backend, answering LATENCY_S later (remote or loaded), counting requests."""
            app = web.Application()

            async def forward(request: web.Request) -> web.Response:
                counts[name] += 1
                await asyncio.sleep(LATENCY_S)
                async with aiohttp.ClientSession() as session, session.get(upstream + request.path_qs) as response:
                    return web.Response(status=response.status, body=await response.read(), content_type=response.content_type)

            app.router.add_get("/{tail:.*}", forward)
            return app

        async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner, f"http://127.0.0.1:{port}"

        async def measure(strategy: str, loki_app: web.Application, loki_url: str, jaeger_url: str, prometheus_url: str) -> None:
            s = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger_url, "CORRELATOR_LOKI_URL": loki_url,
                                       "CORRELATOR_PROMETHEUS_URL": prometheus_url, "CORRELATOR_CACHE_MAX_ENTRIES": "0",
                                       "CORRELATOR_PROMETHEUS_EXEMPLAR_SELECTOR": QUERY,
                                       "CORRELATOR_LOKI_SELECTOR_STRATEGY": strategy})
            slow = next(r for r in reqs if r.slow and r.sent)
            tid, hint = parse_trace_id(slow.trace_id), Window(slow.end_ns, slow.end_ns)
            request = Request(QUERY, Window(now - 15 * 60 * 10**9, now), 20)
            async with make_client(s.jaeger) as jc, make_client(s.loki) as lc, make_client(s.prometheus) as pc:
                prometheus = PrometheusSource(s.prometheus, pc)
                correlator = Correlator(s, JaegerSource(s.jaeger, jc), LokiSource(s.loki, lc), prometheus)
                hinted, unhinted, investigations = [], [], []
                per_investigation: list[Counter[str]] = []
                def cold() -> None:  # every step without the untraced answers the one before shared (untraced_share.py)
                    correlator.shared = SharedLookups(s.join.untraced_share_seconds)

                for _ in range(runs):
                    cold()
                    t = time.perf_counter()
                    await correlator.correlate(tid, hint)
                    hinted.append((time.perf_counter() - t) * 1000)
                    cold()
                    t = time.perf_counter()
                    await correlator.correlate(tid)
                    unhinted.append((time.perf_counter() - t) * 1000)
                    cold()
                    before, loki_before = Counter(counts), len(loki_app[REQUESTS])
                    t = time.perf_counter()
                    found = await investigate(s, correlator, prometheus, request)
                    investigations.append((time.perf_counter() - t) * 1000)
                    assert found.suspects and found.suspects[0].operation[1] == "SELECT courses", found.suspects[:1]
                    used = counts - before
                    used["loki"] = len(loki_app[REQUESTS]) - loki_before
                    per_investigation.append(used)
            inv, one_h, one_u = (statistics.median(x) for x in (investigations, hinted, unhinted))
            last = per_investigation[-1]
            print(f"[loki.selector_strategy={strategy}] one correlation p50: with hint (Grafana links) {one_h:.1f} ms, "
                  f"without {one_u:.1f} ms; investigate of 20 traces (19 read, 1 lost) {inv:.1f} ms")
            print(f"[loki.selector_strategy={strategy}] investigate ÷ one correlation: {inv / one_u:.2f} (without hint), "
                  f"{inv / one_h:.2f} (with hint); backend requests per investigation: prometheus {last['prometheus']}, "
                  f"jaeger {last['jaeger']}, loki {last['loki']}")

        async def main() -> None:
            loki_app = make_fake_loki_app(latency_s=LATENCY_S, extra=data.log_entries(reqs))
            runners = [await serve(loki_app), await serve(delayed("jaeger", jaeger.query_url)),
                       await serve(delayed("prometheus", prom_url))]
            (_, loki_url), (_, jaeger_url), (_, prometheus_url) = runners
            print(f"backends answer {LATENCY_S * 1000:.0f} ms late; {runs} runs each; cache off")
            for strategy in ("services", "static"):
                await measure(strategy, loki_app, loki_url, jaeger_url, prometheus_url)
            for runner, _url in runners:
                await runner.cleanup()

        asyncio.run(main())


def rss_backends(port: int, spans: int) -> None:
    """Jaeger/Loki/Prometheus stand-ins answering at once: 20 traces of `spans` spans, their lines and exemplars."""
    import re

    import orjson
    from aiohttp import web

    from bench.fake_backends import PLACEHOLDER, T0, otlp_trace

    ids = [f"{0xFEED0000 + i:032x}" for i in range(20)]
    trace = otlp_trace(spans)
    hex32 = re.compile(r"[0-9a-f]{20,32}")

    async def jaeger(request: web.Request) -> web.Response:
        return web.Response(body=trace.replace(PLACEHOLDER.encode(), request.match_info["id"].encode()),
                            content_type="application/json")

    async def loki(request: web.Request) -> web.Response:
        wanted = [i for i in ids if any(i.endswith(n) for n in hex32.findall(request.query.get("query", "")))]
        values = [[str(T0 + j * 1_000_000), f'level=info msg="step {j}" trace_id={tid} span_id={j % spans + 1:016x}',
                   {"structuredMetadata": {"detected_level": "info"}}] for tid in wanted for j in range(50)]
        body = {"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"],
                                              "result": [{"stream": {"service_name": "course-service"}, "values": values}]}}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def prometheus(request: web.Request) -> web.Response:
        exemplars = [{"labels": {"trace_id": tid}, "value": str(2.0 - i * 0.09), "timestamp": (T0 + 5_000_000) / 1e9}
                     for i, tid in enumerate(ids)]
        body = {"status": "success", "data": [{"seriesLabels": {"__name__": "http_server_duration_seconds_bucket",
                                                                "le": "2.5"}, "exemplars": exemplars}]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v3/traces/{id}", jaeger)
    app.router.add_get("/loki/api/v1/query_range", loki)
    app.router.add_get("/api/v1/query_exemplars", prometheus)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def rss_child(url: str) -> None:
    from correlator.config import load_settings
    from correlator.correlate import Correlator
    from correlator.investigate_render import investigation_body
    from correlator.investigate_run import Request, investigate
    from correlator.model import Window
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource

    async def main() -> None:
        s = load_settings(environ={"CORRELATOR_JAEGER_URL": url, "CORRELATOR_LOKI_URL": url, "CORRELATOR_PROMETHEUS_URL": url,
                                   "CORRELATOR_INVESTIGATE_DEADLINE_SECONDS": "120", "CORRELATOR_DEADLINE_SECONDS": "60"})
        t0 = 1_795_572_505 * 10**9
        async with make_client(s.jaeger) as jc, make_client(s.loki) as lc, make_client(s.prometheus) as pc:
            prometheus = PrometheusSource(s.prometheus, pc)
            correlator = Correlator(s, JaegerSource(s.jaeger, jc), LokiSource(s.loki, lc), prometheus)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t = time.perf_counter()
            window = Window(t0 - 3600 * 10**9, t0 + 60 * 10**9)
            found = await investigate(s, correlator, prometheus, Request("m_bucket", window, 20))
            body = investigation_body(found, s)
            took = (time.perf_counter() - t) * 1000
        spans = sum(len(r.outcome.correlation.trace.spans) for r in found.traces
                    if r.outcome is not None and r.outcome.correlation.trace is not None)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"20 traces, {spans} spans in all, {body['summary']['correlated']} read in {took:.0f} ms: "
              f"peak RSS {peak:.0f} MB (after imports {before:.0f} MB; the 20 correlations stay cached)")

    asyncio.run(main())


def rss() -> None:
    from tests.integration.servers import free_port, running

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    import httpx

    with running([sys.executable, __file__, "rss-backends", str(port), "1000"], "rss backends",
                 lambda: httpx.get(f"{url}/api/v1/query_exemplars", timeout=1).status_code == 200):
        subprocess.run([sys.executable, __file__, "rss-child", url], check=True)


def main() -> int:
    if sys.argv[1:2] == ["rss-backends"]:
        rss_backends(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    if sys.argv[1:2] == ["rss-child"]:
        rss_child(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["cost", "rss"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.quick)
    else:
        rss()
    return 0


if __name__ == "__main__":
    sys.exit(main())
