"""P3's assembly and response, in process: the parts of a small correlation after the backends answered.

    python bench/p3_assembly.py                      # µs per part, process CPU, min of repeats
    python bench/p3_assembly.py --calls 200 all      # for callgrind: 200 × (assembly + body + standings + dumps)
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python3.11 bench/p3_assembly.py --calls 200 all   # instructions (setup and capture not counted)

Starts `bench/run.py`'s backends (no latency) and the service's app in this process, makes a few P3 correlations
through HTTP, and keeps what `Correlator._assemble` was given (the sources' parsed answers and the untraced
lookups' result) and the standings `add_standings` was given. Then replays, on those very inputs: `_assemble`
(tree, clocks, join, analysis, untraced attach, skew), `correlation_body` (as `api._respond` calls it),
`add_standings` and the JSON dump (`api._dumps`). Parts: assemble, body, standings, dumps, all, and the body's
pieces body.ids|spans|lines|summary|exemplars|findings, standings.body, dumps.findings. It measures the
tree it sits in; to compare another tree, run its copy (at the same time, for callgrind's figure too).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

import correlator.api as api
import correlator.standing_run as standing_run
from bench import run as bench
from correlator import render
from correlator.config import load_settings
from correlator.correlate import Correlator
from correlator.render import correlation_body


async def _capture(base: str, count: int) -> tuple[Any, Any, Any]:
    """(Correlator, `_assemble`'s arguments, the standings) of the last of `count` P3 correlations."""
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": base, "CORRELATOR_LOKI_URL": base,
                                      "CORRELATOR_PROMETHEUS_URL": base, "CORRELATOR_CACHE_MAX_ENTRIES": "0"})
    seen: dict[str, Any] = {}
    assemble, add_standings = Correlator._assemble, standing_run.add_standings

    def spy_assemble(self: Correlator, *args: Any) -> Any:
        seen["correlator"], seen["args"] = self, args
        return assemble(self, *args)

    def spy_standings(body: Any, correlation: Any, standings: Any) -> None:
        seen["standings"] = standings
        add_standings(body, correlation, standings)

    setattr(Correlator, "_assemble", spy_assemble)  # noqa: B010  # the spies, for the capture only
    setattr(api, "add_standings", spy_standings)  # noqa: B010
    runner = web.AppRunner(api.create_app(settings))
    await runner.setup()
    port = bench.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(count):
                async with session.get(f"http://127.0.0.1:{port}/correlate/{n + 1:032x}") as response:
                    assert response.status == 200, response.status
                    await response.read()
    finally:
        await runner.cleanup()
        setattr(Correlator, "_assemble", assemble)  # noqa: B010
        setattr(api, "add_standings", add_standings)  # noqa: B010
    return seen["correlator"], seen["args"], seen["standings"]


def capture() -> tuple[Any, Any, Any]:
    port = bench.free_port()
    with contextlib.redirect_stdout(io.StringIO()):
        backends = bench._backends(port, 0, 0.0)
    try:
        return asyncio.run(_capture(f"http://127.0.0.1:{port}", 5))
    finally:
        backends.kill()
        backends.wait()


def parts(correlator: Correlator, args: Any, standings: Any) -> dict[str, Any]:
    settings = correlator.settings
    outcome = correlator._assemble(*args)
    body = correlation_body(outcome, settings, spans_as_json=True, lines_as_json=True)
    standing_run.add_standings(body, outcome.correlation, standings)
    c = outcome.correlation
    ids = [render._ids_by_span(c.logs, c.log_placements), render._ids_by_span(c.exemplars, c.exemplar_placements),
           render._ids_by_span(c.inferred_logs, c.inferred_placements)]

    def everything() -> bytes:
        out = correlator._assemble(*args)
        b = correlation_body(out, settings, spans_as_json=True, lines_as_json=True)
        standing_run.add_standings(b, out.correlation, standings)
        return api._dumps(b)

    return {
        "assemble": lambda: correlator._assemble(*args),
        "body": lambda: correlation_body(outcome, settings, spans_as_json=True, lines_as_json=True),
        "standings": lambda: standing_run.add_standings(dict(body), outcome.correlation, standings),
        "dumps": lambda: api._dumps(body),
        "all": everything,
        # The body's pieces (session 10), each as correlation_body / add_standings / the dump make it.
        "body.ids": lambda: [render._ids_by_span(a, b) for a, b in ((c.logs, c.log_placements),
                                                                   (c.exemplars, c.exemplar_placements),
                                                                   (c.inferred_logs, c.inferred_placements))],
        "body.spans": lambda: render._spans_json(outcome.tree, *ids),
        "body.lines": lambda: render._logs_json(c.logs + c.inferred_logs, c.log_placements + c.inferred_placements),
        "body.summary": lambda: render._summary(c, outcome.tree),
        "body.exemplars": lambda: render._exemplars(c.exemplars, c.exemplar_placements),
        "body.findings": lambda: [render._finding(f) for f in c.findings],
        "standings.body": lambda: [standing_run.standing_body(s) for s in standings],
        "dumps.findings": lambda: api._dumps(body["findings"]),
    }


def cpu_min(call: Any, number: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            call()
        best = min(best, (time.process_time() - start) / number)
    return best


def main() -> None:
    correlator, args, standings = capture()
    calls = parts(correlator, args, standings)
    if sys.argv[1:2] == ["--calls"]:
        count, which = int(sys.argv[2]), sys.argv[3]
        call = calls[which]
        for _ in range(20):
            call()  # caches warm, as in a running service
        gc.disable()
        functools.reduce(lambda acc, _: call(), range(count), None)
        return
    gc.disable()
    unit = cpu_min(lambda: sum(range(1000)), 2000, 5)
    print(f"unit sum(range(1000)): {unit * 1e6:.1f} µs")
    for name, call in calls.items():
        print(f"{name:10} {cpu_min(call, 500, 9) * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
