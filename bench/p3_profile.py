"""A py-spy raw profile of the served process → where a correlation's CPU goes, by part of the pipeline.

    BENCH_DURATION=18 python bench/run.py p3 &
    sleep 4; py-spy record -p $(pgrep -f "correlator serve --port") --rate 400 -f raw -o p3.txt -d 11 --nonblocking
    python bench/p3_profile.py p3.txt

Each sample goes to the part named by its deepest frame that matches one (so a parse inside a source call counts
as the parse, a GET inside it as the GET). "aiohttp client/loop" are samples with no correlator frame (uvloop's
callbacks: the client reading answers, the server reading requests); the floor (`run.py p3 --floor aiohttp`) pays
those and the GETs too.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

PARTS = (  # (part, pattern of a frame); the deepest matching frame decides
    ("Jaeger parse", r"parse_otlp_answer|_otlp_trace|JaegerSource\._parsed"),
    ("Loki parse", r"parse_streams_body|_native_lines"),
    ("Loki trace check + merge", r"LokiSource\._carries|merge_duplicate|carries_trace"),
    ("Prometheus parse", r"parse_exemplars"),
    ("standing", r"StandingLookup|add_standings|standing_body"),
    ("untraced lookup", r"Correlator\._untraced|untraced_scope|SharedLookups|attach_untraced|lines_within|spans_within|"
                        r"_other_traces|_untraced_lines"),
    ("tree + clock skew", r"build_tree|estimate_clocks|skew_findings"),
    ("join", r"\bjoin \(correlator/join|ids_by_span"),
    ("analysis", r"\banalyse \(|correlator/analysis/"),
    ("render (body)", r"correlation_body|correlator/render\.py"),
    ("JSON dumps + response", r"_json \(correlator/api"),
    ("backend GETs (our client, _wire.py)", r"_get_fast|Resilience\.send|correlator/sources/_wire\.py"),
    ("access log", r"Logger\.info|logging/__init__"),
    ("tracing", r"start_as_current_span|server_span|use_span|propagate"),
    ("metrics", r"observe_request|observe_source|prometheus_client"),
    ("bulkheads", r"bulkhead\.py"),
    ("orchestration (correlate.py: tasks, timeouts, reports)", r"correlator/correlate\.py"),
    ("handler + middleware (api.py)", r"correlator/api\.py"),
    ("aiohttp server: response out", r"finish_response|write_eof|StreamResponse\.prepare|_write_headers"),
    ("aiohttp server: request in", r"web_protocol|web_app|web_urldispatcher|web_request"),
)
_COMPILED = [(name, re.compile(pattern)) for name, pattern in PARTS]
_OURS = re.compile(r"correlator/(?!cli\.py|__main__\.py)")


def part_of(frames: list[str]) -> str:
    found = None
    for frame in frames:
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                found = name
    if found is not None:
        return found
    return "other correlator code" if any(_OURS.search(f) for f in frames) else "aiohttp client/loop (no correlator frame)"


def main() -> int:
    shares: Counter[str] = Counter()
    for line in open(sys.argv[1], encoding="utf-8"):
        stack, _, count = line.rstrip().rpartition(" ")
        if stack:
            shares[part_of(stack.split(";"))] += int(count)
    total = sum(shares.values())
    for name, samples in shares.most_common():
        print(f"{100 * samples / total:5.1f} %  {name}")
    print(f"({total} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
