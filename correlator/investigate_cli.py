"""`correlator investigate QUERY [--start --end --limit --threshold --json]`: the /investigate body or its text.

Exit codes: 0 read; 1 no exemplars in the window; 2 bad input; 3 some traces could not be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import orjson

from correlator.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Registers the subcommand through the CLI's own `command(name, summary)` factory."""
    inv = command("investigate", "why are this series' requests slow: its exemplar traces read together, "
                                 "suspects ranked (exit 1: no exemplars; 3: some traces could not be read)")
    inv.add_argument("query", help='PromQL selector or histogram, e.g. http_server_duration_seconds_bucket{route="/api/courses"}')
    inv.add_argument("--start", help="window start: RFC 3339 or Unix s/ms/µs/ns (default: end - investigate.lookback_seconds)")
    inv.add_argument("--end", help="window end (default: now)")
    inv.add_argument("--limit", default="20", help="traces to read (default 20; at most investigate.max_traces)")
    inv.add_argument("--threshold", help="slow means an exemplar value ≥ this, in the metric's unit (default: found)")
    inv.add_argument("--json", action="store_true", help="print the API's JSON body")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from correlator.correlate import Correlator
    from correlator.errors import SourceError
    from correlator.investigate_api import parse_request
    from correlator.investigate_render import empty_body, investigation_body, investigation_text
    from correlator.investigate_run import investigate
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource

    params = {k: v for k, v in (("query", args.query), ("start", args.start), ("end", args.end), ("limit", args.limit),
                                ("threshold", args.threshold)) if v is not None}
    request = parse_request(params, settings, time.time_ns())
    async with make_client(settings.jaeger) as jc, make_client(settings.loki) as lc, make_client(settings.prometheus) as pc:
        prometheus = PrometheusSource(settings.prometheus, pc)
        correlator = Correlator(settings, JaegerSource(settings.jaeger, jc), LokiSource(settings.loki, lc), prometheus)
        try:
            found = await investigate(settings, correlator, prometheus, request)
        except SourceError as exc:
            print(f"correlator: {exc}", file=sys.stderr)
            return 2 if getattr(exc, "status_code", None) == 400 else 3
    body = investigation_body(found, settings) if found.traces else empty_body(request, found.exemplar_count)
    if args.json:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(investigation_text(body))
    if not found.traces:
        return 1
    return 3 if body["failed"] else 0
