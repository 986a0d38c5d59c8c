"""Every LogQL the correlator sends to Loki, for the Node test that parses it with Grafana's parser.

    python3 -m tests.node.correlator_logql   → JSON list of {"case", "query"} on stdout

The queries come from the correlator's own code (LokiSource.queries) for realistic inputs:
128- and 64-bit IDs, one and several services, odd service names, and the static selector.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx

from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.sources.loki import LokiSource

CASES: list[tuple[str, str, list[str] | None]] = [
    ("128-bit, one service", "4bf92f3577b34da6a3ce929d0e0e4736", ["nextgen-api"]),
    ("128-bit, the seed's three services", "ee9361a3a14d7ba0984c0ba7d5223fd4", ["nextgen-api", "auth-service", "course-service"]),
    ("64-bit ID (two metadata spellings)", "7b4c2d9e1f3a5b6c", ["billing"]),
    ("services unknown: static selector", "4bf92f3577b34da6a3ce929d0e0e4736", None),
    ("no usable service name: static selector", "4bf92f3577b34da6a3ce929d0e0e4736", [""]),
    ("service names needing escapes", "4bf92f3577b34da6a3ce929d0e0e4736", ['a"b', "c\\d", "dots.and|pipes", "ünï"]),
]


def queries() -> list[dict[str, str]]:
    client = httpx.AsyncClient()  # LokiSource needs one; building queries sends nothing
    try:
        return _queries(client)
    finally:
        asyncio.run(client.aclose())


def _queries(client: httpx.AsyncClient) -> list[dict[str, str]]:
    settings = load_settings(environ={}).loki
    source = LokiSource(settings, client)
    out = []
    for case, trace_id, services in CASES:
        line_filter, metadata = source.queries(parse_trace_id(trace_id), services)
        out += [{"case": f"{case}: line filter", "query": line_filter}, {"case": f"{case}: metadata", "query": metadata}]
    static = LokiSource(load_settings(environ={"CORRELATOR_LOKI_SELECTOR_STRATEGY": "static"}).loki, client)
    line_filter, metadata = static.queries(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"), ["nextgen-api"])
    out += [{"case": "strategy static: line filter", "query": line_filter},
            {"case": "strategy static: metadata", "query": metadata}]
    return out


if __name__ == "__main__":
    json.dump(queries(), sys.stdout, ensure_ascii=False, indent=1)
