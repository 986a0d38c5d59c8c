"""How long `build_tree` + `analyse` (and the text tree) take on realistic synthetic traces.

    python bench/bench_analysis.py            1k / 10k / 100k spans, median of 5 runs
    python bench/bench_analysis.py --quick    1k / 10k, median of 3: a couple of seconds

Shape of each request block under the gateway root: an auth hop (client → server), a
course-service span with an N+1 loop of 12 sequential SELECTs, a cache lookup (every 7th a
slow miss), every 5th an uninstrumented 15 ms wait, a parallel fan-out of 4 client → server
hops each with 2 internal spans, and every 10th block an error. Big traces are batch-like:
the blocks repeat under one root, so the root's children are themselves loops.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from correlator.analysis import analyse
from correlator.config import AnalysisSettings
from correlator.model import Span, Trace
from correlator.spantree import build_tree
from correlator.text_tree import render_tree

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.spans: list[Span] = []

    def jitter(self, ms: float) -> int:
        return int(ms * MS * self.rng.uniform(0.7, 1.3))

    def add(self, parent: str | None, service: str, op: str, start: int, dur: int, **kw: Any) -> str:
        sid = f"{len(self.spans) + 1:016x}"
        self.spans.append(Span(sid, parent, service, op, start, start + dur, **kw))
        return sid

    def block(self, root: str, t: int, n: int) -> int:
        """One request's worth of work starting at t; returns its end."""
        call = self.add(root, "api-gateway", "POST auth", t, self.jitter(16), kind="client")
        self.add(call, "auth-service", "validate token", t + MS, self.jitter(13), kind="server")
        t += self.jitter(17)
        course_index = len(self.spans)
        course = self.add(root, "course-service", "GET /courses", t, 0, kind="server")  # end set below
        cursor = t + MS
        for _ in range(12):  # the N+1 loop
            dur = self.jitter(2)
            self.add(course, "course-service", "SELECT lessons", cursor, dur, kind="client",
                     attributes={"db.statement": f"SELECT * FROM lessons WHERE course_id = {self.rng.randint(1, 999)}"})
            cursor += dur + MS // 5
        slow_cache = n % 7 == 3  # a cache miss: a long span against its operation's median
        self.add(course, "course-service", "cache lookup", cursor, self.jitter(40 if slow_cache else 1))
        cursor += (42 if slow_cache else 2) * MS
        if n % 5 == 1:
            cursor += 15 * MS  # uninstrumented waiting: a gap inside the course service
        fan_end = cursor
        for svc in ("pricing", "reviews", "stock", "media"):  # parallel fan-out
            dur = self.jitter(20)
            client = self.add(course, "course-service", f"GET {svc}", cursor, dur, kind="client")
            server = self.add(client, svc, f"GET /{svc}", cursor + MS, dur - 2 * MS, kind="server")
            half = (dur - 4 * MS) // 2
            self.add(server, svc, "load", cursor + 2 * MS, half)
            status = "error" if n % 10 == 0 and svc == "stock" else "unset"
            self.add(server, svc, "encode", cursor + 2 * MS + half, half, status=status)
            fan_end = max(fan_end, cursor + dur)
        end = fan_end + self.jitter(3)
        self.spans[course_index] = Span(course, root, "course-service", "GET /courses", t, end, kind="server")
        return end


def synthetic_trace(n_spans: int, seed: int = 7) -> Trace:
    b = _Builder(seed)
    root = b.add(None, "api-gateway", "GET /api/courses", T0, 0, kind="server")
    t, n = T0 + MS, 0
    while len(b.spans) < n_spans:
        t = b.block(root, t, n) + MS
        n += 1
    b.spans[0] = Span(root, None, "api-gateway", "GET /api/courses", T0, t + MS, kind="server")
    return Trace("4bf92f3577b34da6a3ce929d0e0e4736", tuple(b.spans))


def median_ms(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k and 10k spans, 3 runs each")
    parser.add_argument("--runs", type=int, help="runs per size (median reported)")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    runs = args.runs or (3 if args.quick else 5)
    settings = AnalysisSettings()
    print(f"analysis benchmark — median of {runs} runs, Python {sys.version.split()[0]}")
    print(f"{'spans':>8} | {'build_tree ms':>13} | {'analyse ms':>10} | {'total ms':>9} | {'µs/span':>7} | "
          f"{'text tree ms':>12} | findings by kind")
    for size in sizes:
        trace = synthetic_trace(size)
        tree_ms, tree = median_ms(lambda: build_tree(trace), runs)  # noqa: B023 - called right here
        analyse_ms, analysis = median_ms(lambda: analyse(tree, settings), runs)  # noqa: B023
        render_ms, _ = median_ms(lambda: render_tree(tree, analysis), runs)  # noqa: B023
        kinds: dict[str, int] = {}
        for f in analysis.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        total = tree_ms + analyse_ms
        print(f"{len(trace.spans):>8} | {tree_ms:>13.1f} | {analyse_ms:>10.1f} | {total:>9.1f} | "
              f"{total * 1000 / len(trace.spans):>7.1f} | {render_ms:>12.1f} | "
              + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))


if __name__ == "__main__":
    main()
