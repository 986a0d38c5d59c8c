"""`analyse` alone, on the inputs the service gives it: P3's correlation and the P2 bench sizes.

    python bench/analysis_cost.py                 # P3 (20 spans) in µs, 10k and 100k in ms: process CPU, min of repeats
    python bench/analysis_cost.py --calls 20 20   # for callgrind: 20 calls of analyse on a 20-span trace, nothing else
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python3.11 bench/analysis_cost.py --calls 20 20   # instructions of 20 analyses (the setup not counted)

The trace, lines and exemplars are `bench.fake_backends`' (as `bench/run.py p2` and P3's backends send them), parsed
and joined by `Correlator._assemble` itself: `analyse` is called with the very tree and span logs the service gives it.
It measures the tree it sits in; to compare another tree, run its copy (at the same time, for callgrind's figure too).
"""

from __future__ import annotations

import functools
import gc
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import correlator.correlate as correlate_module
from bench.fake_backends import exemplars, loki_streams, otlp_trace
from correlator.analysis import analyse
from correlator.config import load_settings
from correlator.correlate import Correlator
from correlator.ids import parse_trace_id
from correlator.model import SourceReport, SourceStatus, Window
from correlator.sources import SourceResult
from correlator.sources.jaeger import parse_otlp_answer
from correlator.sources.loki import parse_streams_body
from correlator.sources.prometheus import parse_exemplars


def inputs(spans: int, lines: int, exemplar_count: int) -> tuple[Any, Any, Any]:
    """(tree, analysis settings, span logs) exactly as `_assemble` passes them to `analyse`."""
    settings = load_settings(environ={})
    correlator = Correlator(settings, None, None, None)  # type: ignore[arg-type]  # no client: _assemble only
    trace_id = parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
    ok = SourceReport(SourceStatus.OK, 1.0)
    trace = parse_otlp_answer(otlp_trace(spans), trace_id.hex)
    assert trace is not None
    logs, _ = parse_streams_body(loki_streams(lines), settings.loki)
    found, _ = parse_exemplars(orjson.loads(exemplars(exemplar_count)), settings.prometheus.trace_id_labels,
                               settings.prometheus.span_id_labels)
    seen: dict[str, Any] = {}

    def spy(*args: Any) -> Any:
        seen["args"] = args
        return analyse(*args)

    setattr(correlate_module, "analyse", spy)  # noqa: B010  # the module reads its own name at call time
    try:
        correlator._assemble(trace_id, Window(trace.start_ns, trace.end_ns), (ok, SourceResult(trace)),
                             (ok, SourceResult(tuple(logs))), (ok, SourceResult(tuple(found))))
    finally:
        setattr(correlate_module, "analyse", analyse)  # noqa: B010
    return seen["args"]  # type: ignore[no-any-return]


def cpu_min(call: Any, number: int, repeats: int) -> float:
    """Process CPU seconds of one call, the minimum over `repeats` rounds of `number` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            call()
        best = min(best, (time.process_time() - start) / number)
    return best


def main() -> None:
    if sys.argv[1:2] == ["--calls"]:
        calls, spans = int(sys.argv[2]), int(sys.argv[3])
        tree, settings, logs = inputs(spans, 20, 2)
        analyse(tree, settings, logs)  # caches warm (statement shapes, regexes), as in a running service
        gc.disable()
        functools.reduce(lambda acc, _: analyse(tree, settings, logs), range(calls), None)
        return
    gc.disable()
    tree, settings, logs = inputs(20, 20, 2)
    print(f"P3 (20 spans, 20 lines, 2 exemplars): {cpu_min(lambda: analyse(tree, settings, logs), 2000, 9) * 1e6:.0f} µs")
    for spans, lines, exemplar_count in ((10_000, 50_000, 2_000), (100_000, 2_000, 20_000)):
        tree, settings, logs = inputs(spans, lines, exemplar_count)
        analyse(tree, settings, logs)
        print(f"{spans} spans, {lines} lines, {exemplar_count} exemplars: "
              f"{cpu_min(lambda: analyse(tree, settings, logs), 1, 7) * 1e3:.1f} ms")  # noqa: B023


if __name__ == "__main__":
    main()
