"""The page's figures (issue 13): HTML render ÷ JSON render for the same correlation, gzipped page
bytes per span, and Chromium's time until the page is interactive at 10k ÷ at 1k spans.

    python3 bench/run.py page            1k and 10k spans, median of 15 paired renders, 3 browser loads each
    python3 bench/run.py page --quick    200 and 1k spans, fewer repeats: the CI smoke

The correlation is bench_analysis's synthetic trace (N+1 loops, fan-outs, errors, gaps) with
attributes on every span (as OTel instrumentations set them), a log line on every span and two
more on every third, an exemplar per 50 spans, and a few lines no span owns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_analysis import synthetic_trace
from correlator.analysis import analyse
from correlator.config import Settings, load_settings
from correlator.correlate import Outcome
from correlator.join import join
from correlator.model import Correlation, Exemplar, LogLine, SourceReport, SourceStatus, Trace, Window
from correlator.render import correlation_body
from correlator.spantree import build_tree
from correlator.web.view import render_correlation

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def make_outcome(n_spans: int) -> Outcome:
    base = synthetic_trace(n_spans)
    spans = []
    for i, span in enumerate(base.spans):
        attributes = {"http.request.method": "GET", "server.address": f"{span.service}.internal",
                      "network.peer.port": 8080 + i % 3, "otel.scope.name": "opentelemetry.instrumentation.bench",
                      "thread.id": i % 16, **span.attributes}
        spans.append(dataclasses.replace(span, attributes=attributes))
    trace = Trace(TRACE, tuple(spans))
    lines: list[LogLine] = []
    for i, span in enumerate(spans):
        for j in range(3 if i % 3 == 0 else 1):
            lines.append(LogLine(f"l{i}-{j}", span.start_ns + j * 100_000,
                                 f'level=info msg="step {j} of {span.operation}" trace_id={TRACE} span_id={span.span_id} '
                                 f'user_id={i % 97} duration_ms={j * 3}', span.service, "info", {"service_name": span.service},
                                 {}, span.span_id))
    lines += [LogLine(f"u{k}", spans[0].start_ns + k, f"orphan line {k} trace_id={TRACE}", "batch", "warn") for k in range(10)]
    exemplars = [Exemplar(f"x{i}", "http_server_duration_seconds_bucket",
                          {"__name__": "http_server_duration_seconds_bucket", "service": span.service, "le": "0.25"},
                          {"trace_id": TRACE, "span_id": span.span_id}, 0.2, span.end_ns, TRACE, span.span_id)
                 for i, span in enumerate(spans) if i % 50 == 0]
    tree = build_tree(trace)
    log_places, exemplar_places = join(tree, lines, exemplars, 50.0)
    analysis = analyse(tree, Settings().analysis)
    ok = SourceReport(SourceStatus.OK, 12.0, 1)
    correlation = Correlation(TRACE, Window(trace.start_ns, trace.end_ns), trace, tuple(lines), log_places, tuple(exemplars),
                              exemplar_places, analysis.critical_path, analysis.findings,
                              {"jaeger": ok, "loki": ok, "prometheus": ok})
    return Outcome(correlation, tree)


def render_json(outcome: Outcome, settings: Settings) -> bytes:
    """What the API sends for JSON (api._json)."""
    return orjson.dumps(correlation_body(outcome, settings), option=orjson.OPT_NON_STR_KEYS)


def render_html(outcome: Outcome, settings: Settings) -> bytes:
    """What the API sends for a browser (web.routes.correlation_page)."""
    return render_correlation(correlation_body(outcome, settings), outcome, settings)


def paired_ms(first: Any, second: Any, repeats: int) -> tuple[float, float, float]:
    """Medians of each and of the per-pair ratio, the two timed back to back so a busy machine weighs on both alike."""
    a, b, ratios = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        ended = time.perf_counter()
        a.append((middle - started) * 1000)
        b.append((ended - middle) * 1000)
        ratios.append((ended - middle) / (middle - started))
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


async def time_to_interactive(pages: dict[int, bytes], loads: int) -> dict[int, float]:
    """Navigation → parsed, script attached, and a click on the first subtree toggle handled (ms, median)."""
    from aiohttp import web
    from playwright.async_api import async_playwright

    from correlator.web.routes import CSP, STATIC

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=pages[int(request.match_info["n"])], content_type="text/html",
                            headers={"Content-Security-Policy": CSP})

    app = web.Application()
    app.router.add_get("/p/{n}", page)
    app.router.add_static("/static/", STATIC)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    results: dict[int, float] = {}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium")
            for n in pages:
                samples = []
                for _ in range(loads):
                    tab = await browser.new_page(viewport={"width": 1280, "height": 900})
                    started = time.perf_counter()
                    await tab.goto(f"http://127.0.0.1:{port}/p/{n}", wait_until="commit")
                    # Selectors, not JS predicates: the page's CSP forbids eval.
                    await tab.wait_for_selector("html[data-ready='1']", state="attached")
                    toggle = "#wf > div:first-child .tw"  # the root's subtree toggle: the page answers input
                    flipped = "false" if await tab.get_attribute(toggle, "aria-expanded") == "true" else "true"
                    await tab.click(toggle)
                    await tab.wait_for_selector(f"{toggle}[aria-expanded='{flipped}']", state="attached")
                    samples.append((time.perf_counter() - started) * 1000)
                    print(f"      load {n}: {samples[-1]:.0f} ms", file=sys.stderr, flush=True)
                    await tab.close()
                results[n] = statistics.median(samples)
            await browser.close()
    finally:
        await runner.cleanup()
    return results


def main(quick: bool) -> None:
    settings = load_settings(environ={})
    sizes = [200, 1000] if quick else [1000, 10_000]
    repeats, loads = (3, 1) if quick else (15, 3)
    print("PAGE  spans | json render ms | html render ms | html/json | html bytes | gzip bytes | gzip B/span")
    pages: dict[int, bytes] = {}
    for n in sizes:
        outcome = make_outcome(n)
        json_ms, html_ms, ratio = paired_ms(lambda: render_json(outcome, settings),  # noqa: B023
                                            lambda: render_html(outcome, settings), repeats)  # noqa: B023
        html = render_html(outcome, settings)
        packed = len(gzip.compress(html, 6))
        pages[n] = html
        print(f"     {n:>6} | {json_ms:14.1f} | {html_ms:14.1f} | {ratio:9.2f} | {len(html):10} | {packed:10} | "
              f"{packed / n:11.0f}", flush=True)
    tti = asyncio.run(time_to_interactive(pages, loads))
    small, big = sizes
    print(f"     Chromium time to interactive: {small} spans {tti[small]:.0f} ms, {big} spans {tti[big]:.0f} ms, "
          f"ratio {tti[big] / tti[small]:.2f} ({big // small} times the spans)")


if __name__ == "__main__":
    main("--quick" in sys.argv)
