"""Instructions of the orchestration around a P3 correlation, in process, with each part switchable off.

    N=200 valgrind --tool=callgrind --callgrind-out-file=a python bench/p3_orchestration.py [--full] [--live] [--cut PARTS]
    N=800 valgrind --tool=callgrind --callgrind-out-file=b python bench/p3_orchestration.py …   # (b − a) / 600 per correlation

Starts `bench/run.py`'s Go backends (0 ms), builds a `Correlator` as `correlator serve` does (its GC tuning included),
makes one real correlation, then replays each source's parsed answer instantly (`--live`: real GETs instead) and runs
N correlations of fresh IDs one after another (`CONC` at a time), the assembly stubbed (`--full`: the real one). The
untraced lookups' shared answers are kept 60 s, so every correlation takes them at once, as under P3's load.
`--cut` replaces parts by their result, to price them (docs/performance-p3.md "Session 9: orchestration and serving"):
`untraced` (the whole untraced lookup), `scope` (its clock estimate and window), `others` / `lines` (the shared
answers' cut-outs), `run` (`Correlator._run`: deadline, span, report), `timeout` (its `asyncio.timeout` only),
`span` (the source spans), `direct` (`correlate()`'s cache, single flight, task and shield). Give the python binary
itself to valgrind, not a pyenv shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import sys
from pathlib import Path
from typing import Any

import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import run as bench  # noqa: E402
from correlator.cli import _tune_gc  # noqa: E402
from correlator.config import load_settings  # noqa: E402
from correlator.correlate import Correlator  # noqa: E402
from correlator.ids import parse_trace_id  # noqa: E402
from correlator.model import SourceReport, SourceStatus  # noqa: E402
from correlator.sources._http import make_client  # noqa: E402
from correlator.sources.jaeger import JaegerSource  # noqa: E402
from correlator.sources.loki import LokiSource  # noqa: E402
from correlator.sources.prometheus import PrometheusSource  # noqa: E402
from correlator.telemetry import _NO_SPAN  # noqa: E402


class _NoTimeout:
    def __init__(self, *_args: Any) -> None:
        pass

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_exc: object) -> None:
        return None


def _replayed(answer: Any) -> Any:
    async def fetch(*_args: Any, **_kwargs: Any) -> Any:
        return answer
    return fetch


async def _cut(c: Correlator, parts: set[str], tid: Any) -> None:
    import correlator.correlate as orchestration

    deadline = 1e18
    if "untraced" in parts:
        found = await c._untraced(tid, await c._run("jaeger", c.jaeger.fetch(tid, None), c.settings.jaeger, deadline),
                                  None, None, deadline)
        c._untraced = _replayed(found)  # type: ignore[method-assign]
    if "scope" in parts:
        scope = c._scope(await c._run("jaeger", c.jaeger.fetch(tid, None), c.settings.jaeger, deadline), None)
        c._scope = lambda *_a: scope  # type: ignore[method-assign]
    if "others" in parts:
        real_others, kept_others = c.shared.other_traces_now, {}

        def others_now(service: str, *args: Any) -> Any:
            if service not in kept_others:
                kept_others[service] = real_others(service, *args)
            return kept_others[service]
        c.shared.other_traces_now = others_now  # type: ignore[method-assign]
    if "lines" in parts:
        real_lines, kept_lines = c.shared.lines_now, []

        def lines_now(*args: Any) -> Any:
            if not kept_lines:
                kept_lines.append(real_lines(*args))
            return kept_lines[0]
        c.shared.lines_now = lines_now  # type: ignore[method-assign]
    if "run" in parts:
        report = SourceReport(SourceStatus.OK, 1.0, 1, False, None, None)

        async def run(_name: str, call: Any, _settings: Any, _deadline: float) -> Any:
            return report, await call
        c._run = run  # type: ignore[method-assign]
    if "timeout" in parts:
        orchestration.asyncio = type("Asyncio", (), {**{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")},
                                                     "timeout": _NoTimeout})  # type: ignore[assignment]
    if "span" in parts:
        orchestration.tracer = type("Tracer", (), {"start_as_current_span": staticmethod(lambda *_a, **_k: _NO_SPAN)})()  # type: ignore[assignment]
    if "direct" in parts:
        c.correlate = lambda t, h=None, te=None: c._correlate(t, h, te)  # type: ignore[method-assign]


async def _main(port: int, count: int, concurrency: int, full: bool, live: bool, parts: set[str]) -> None:
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CORRELATOR_JAEGER_URL": base, "CORRELATOR_LOKI_URL": base, "CORRELATOR_PROMETHEUS_URL": base,
           "CORRELATOR_CACHE_MAX_ENTRIES": "0", "CORRELATOR_JOIN_UNTRACED_SHARE_SECONDS": "60"}
    settings = load_settings(None, env)
    async with contextlib.AsyncExitStack() as stack:
        clients = {n: await stack.enter_async_context(make_client(getattr(settings, n))) for n in ("jaeger", "loki", "prometheus")}
        jaeger = JaegerSource(settings.jaeger, clients["jaeger"])
        loki, prometheus = LokiSource(settings.loki, clients["loki"]), PrometheusSource(settings.prometheus, clients["prometheus"])
        c = Correlator(settings, jaeger, loki, prometheus)
        tid = parse_trace_id(f"{random.getrandbits(128):032x}")
        first = await c.correlate(tid)
        if not live:
            window = first.correlation.window
            services = sorted({s.service for s in first.correlation.trace.spans})
            jaeger.fetch = _replayed(await jaeger.fetch(tid, None))  # type: ignore[method-assign]
            loki.fetch = _replayed(await loki.fetch(tid, window, services))  # type: ignore[method-assign]
            prometheus.fetch = _replayed(await prometheus.fetch(tid, window))  # type: ignore[method-assign]
        if not full:
            c._assemble = lambda *_a, **_k: first  # type: ignore[method-assign]
        _tune_gc()
        await _cut(c, parts, tid)
        ids = iter([parse_trace_id(f"{random.getrandbits(128):032x}") for _ in range(count + concurrency)])

        async def worker(n: int) -> None:
            for _ in range(n):
                await c.correlate(next(ids))
        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))


def main() -> int:
    random.seed(1)
    args = sys.argv[1:]
    parts = set(args[args.index("--cut") + 1].split(",")) if "--cut" in args else set()
    port = bench.free_port()
    with contextlib.redirect_stdout(io.StringIO()):
        backends = bench._backends(port, 0, 0.0)
    try:
        uvloop.run(_main(port, int(os.environ.get("N", "1000")), int(os.environ.get("CONC", "1")), "--full" in args,
                         "--live" in args, parts))
    finally:
        backends.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
