"""Precision and recall of attaching lines without a trace ID (correlator/untraced.py) on a generated workload.

    python bench/untraced.py [--traces 300] [--noise 0.05] [--seed 1]

A workload of three services (api-gateway → auth-service, api-gateway → course-service → its DB call
and cache lookup) with 1, 4 and 16 concurrent requests per service on average (Poisson arrivals).
Every span writes untraced lines at random instants inside it (ground truth: its trace and span);
`--noise` of all lines are background lines of the same services that belong to no request
(schedulers, health checks, pools). For each sampled trace the correlator's own pieces run as the
service runs them: the candidate lines are the trace's services' lines in its window (the Loki
lookup), "other traces" are what a Jaeger search of each service returns (`others_search_window`,
search depth 50: more → unknown), and `attach_untraced` places them.

A placement is correct when the line belongs to that trace and (high/medium) to that span, or (low)
to a descendant-or-self of it. Recall: the trace's own lines attached correctly, at any confidence.
"""

from __future__ import annotations

import argparse
import random
import sys
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from correlator.model import Confidence, LogLine, Span, Trace, Window  # noqa: E402
from correlator.sources.jaeger import others_search_window  # noqa: E402
from correlator.spantree import build_tree  # noqa: E402
from correlator.untraced import attach_untraced, untraced_window  # noqa: E402
from correlator.untraced_share import SearchAnswer, aligned, spans_within  # noqa: E402

MS = 1_000_000
SERVICES = ("api-gateway", "auth-service", "course-service")
SEARCH_DEPTH = 50  # correlate._OTHER_TRACES_DEPTH
WINDOW_MARGIN_NS = 50 * MS  # join.clock_skew_ms


@dataclass(frozen=True)
class Truth:
    trace_id: str | None
    span_id: str | None


def make_request(rng: random.Random, index: int, t0: int) -> Trace:
    """gateway [0, D] → auth [a, a+A] and courses [c, c+C] → db, cache (sequential), jittered."""
    trace_id = f"{index + 1:032x}"
    sid = iter(f"{index:08x}{k:08x}" for k in range(10))
    auth_d = rng.randint(5, 20) * MS
    db_d = rng.randint(10, 90) * MS
    cache_d = rng.randint(1, 8) * MS
    courses_d = db_d + cache_d + rng.randint(4, 20) * MS
    gap = rng.randint(1, 4) * MS
    total = gap + auth_d + gap + courses_d + gap
    g, a, c, d, k = next(sid), next(sid), next(sid), next(sid), next(sid)
    auth_start = t0 + gap
    courses_start = auth_start + auth_d + gap
    db_start = courses_start + 2 * MS
    return Trace(trace_id, (
        Span(g, None, "api-gateway", "GET /api/courses", t0, t0 + total, kind="server"),
        Span(a, g, "auth-service", "POST /validate", auth_start, auth_start + auth_d, kind="server"),
        Span(c, g, "course-service", "GET /courses", courses_start, courses_start + courses_d, kind="server"),
        Span(d, c, "course-service", "SELECT courses", db_start, db_start + db_d, kind="client"),
        Span(k, c, "course-service", "cache lookup", db_start + db_d + MS, db_start + db_d + MS + cache_d, kind="internal"),
    ))


def workload(rng: random.Random, concurrency: int, traces: int, noise: float) -> tuple[list[Trace], list[tuple[LogLine, Truth]]]:
    mean_ns = 80 * MS  # mean request duration (measured below); arrivals at concurrency ÷ duration
    rate_per_ns = concurrency / mean_ns
    t, out = 1_800_000_000 * 10**9, []
    for i in range(traces):
        t += int(rng.expovariate(rate_per_ns))
        out.append(make_request(rng, i, t))
    lines: list[tuple[LogLine, Truth]] = []
    for trace in out:
        for span in trace.spans:
            # A synchronous request logs in the context it is in: a span's own lines fall outside its
            # children of the same service (while the DB call runs, the line is the DB span's).
            busy = [(c.start_ns, c.end_ns) for c in trace.spans if c.parent_span_id == span.span_id and c.service == span.service]
            for _ in range(rng.randint(1, 3)):
                at = rng.randint(span.start_ns, span.end_ns)
                while any(s <= at <= e for s, e in busy):
                    at = rng.randint(span.start_ns, span.end_ns)
                lines.append((LogLine(f"l{len(lines)}", at, "work", span.service), Truth(trace.trace_id, span.span_id)))
    start, end = out[0].start_ns, max(tr.end_ns for tr in out)
    background = int(len(lines) * noise / (1 - noise))
    for _ in range(background):
        at = rng.randint(start, end)
        lines.append((LogLine(f"l{len(lines)}", at, "background", rng.choice(SERVICES)), Truth(None, None)))
    lines.sort(key=lambda pair: pair[0].timestamp_ns)
    return out, lines


def search(spans_by_service: dict[str, list[tuple[int, int, str]]], starts: dict[str, list[int]], service: str,
           window: Window, mine: str) -> list[tuple[int, int]] | None:
    """What a Jaeger search of `service` returns: spans starting in the search window, ≤ depth traces."""
    area = others_search_window(window)
    spans = spans_by_service[service]
    lo, hi = bisect_left(starts[service], area.start_ns), bisect_right(starts[service], area.end_ns)
    found = spans[lo:hi]
    if len({trace for _s, _e, trace in found}) >= SEARCH_DEPTH:
        return None
    return [(s, e) for s, e, trace in found if trace != mine]


def shared_search(spans_by_service: dict[str, list[tuple[int, int, str]]], starts: dict[str, list[int]], service: str,
                  window: Window, mine: str) -> list[tuple[int, int]] | None:
    """What the service answers when correlations share searches (untraced_share.py): one search over the
    window aligned to whole seconds, depth × 4, cut to this window client-side; its own search when that was cut."""
    area = others_search_window(window)
    wide = aligned(area)
    spans = spans_by_service[service]
    lo, hi = bisect_left(starts[service], wide.start_ns), bisect_right(starts[service], wide.end_ns)
    by_trace: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for start, end, trace in spans[lo:hi]:
        by_trace[trace].append((start, end))
    answer = SearchAnswer(wide, {t: tuple(v) for t, v in by_trace.items()}, len(by_trace) < 4 * SEARCH_DEPTH)
    usable, found = spans_within(answer, area, mine, SEARCH_DEPTH)
    return found if usable else search(spans_by_service, starts, service, window, mine)


def run(concurrency: int, traces: int, noise: float, seed: int, shared: bool = False) -> dict[str, float]:
    rng = random.Random(seed * 1000 + concurrency)
    requests, lines = workload(rng, concurrency, traces, noise)
    stamps = [line.timestamp_ns for line, _truth in lines]
    spans_by_service: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for trace in requests:
        for span in trace.spans:
            spans_by_service[span.service].append((span.start_ns, span.end_ns, trace.trace_id))
    for spans in spans_by_service.values():
        spans.sort()
    starts = {service: [s for s, _e, _t in spans] for service, spans in spans_by_service.items()}
    attached: dict[Confidence, list[bool]] = defaultdict(list)
    own_total = own_found = own_high = 0
    mean_in_flight = sum(tr.end_ns - tr.start_ns for tr in requests) / (requests[-1].end_ns - requests[0].start_ns)
    for trace in requests[len(requests) // 10: len(requests) - len(requests) // 10]:  # steady state only
        tree = build_tree(trace)
        window = untraced_window(trace, WINDOW_MARGIN_NS)
        lo, hi = bisect_left(stamps, window.start_ns), bisect_right(stamps, window.end_ns)
        candidates = lines[lo:hi]
        truth = {line.id: t for line, t in candidates}
        ask = shared_search if shared else search
        others = {service: ask(spans_by_service, starts, service, window, trace.trace_id) for service in SERVICES}
        placed = attach_untraced(tree, [line for line, _t in candidates], others)
        own_total += sum(1 for t in truth.values() if t.trace_id == trace.trace_id)
        for line, placement in placed:
            t = truth[line.id]
            if placement.confidence is Confidence.LOW:
                ok = t.trace_id == trace.trace_id and placement.span_id in _ancestors_or_self(tree, t.span_id)
            else:
                ok = t.trace_id == trace.trace_id and placement.span_id == t.span_id
            assert placement.confidence is not None
            attached[placement.confidence].append(ok)
            own_found += ok
            own_high += ok and placement.confidence is Confidence.HIGH
    out = {"in_flight": mean_in_flight, "recall": own_found / own_total if own_total else 0.0,
           "recall_high": own_high / own_total if own_total else 0.0}
    for level in Confidence:
        results = attached.get(level, [])
        out[f"{level.value}_n"] = len(results)
        out[f"{level.value}_precision"] = sum(results) / len(results) if results else float("nan")
    return out


def _ancestors_or_self(tree: object, span_id: str | None) -> set[str]:
    by_id = tree.by_id  # type: ignore[attr-defined]
    out, cursor = set(), span_id
    while cursor is not None and cursor in by_id and cursor not in out:
        out.add(cursor)
        cursor = by_id[cursor].parent_span_id
    return out


def _cell(r: dict[str, float], level: str) -> str:
    n = int(r[f"{level}_n"])
    return f"{r[f'{level}_precision']:.3f} ({n})" if n else "— (0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.05, help="share of lines that belong to no request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shared", action="store_true", help="other traces as the service's shared searches answer")
    args = parser.parse_args()
    print(f"traces per level: {args.traces}, background lines: {args.noise:.0%} of all, seed {args.seed}")
    print("| concurrent requests / service | measured in flight | high: precision (n) | medium: precision (n) | "
          "low: precision (n) | recall (any) | recall (high) |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in (1, 4, 16):
        r = run(concurrency, args.traces, args.noise, args.seed, args.shared)
        cells = " | ".join(_cell(r, level) for level in ("high", "medium", "low"))
        print(f"| {concurrency} | {r['in_flight']:.1f} | {cells} | {r['recall']:.3f} | {r['recall_high']:.3f} |")


if __name__ == "__main__":
    main()
