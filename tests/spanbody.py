"""The response body of one correlation from the three backends' bytes, exactly as the service renders it.

`python tests/spanbody.py SPANS LINES EXEMPLARS OUT` with `PYTHONPATH` naming the checkout to render with
(how the golden files beside tests/fixtures/own/spans_identical/ were made from main's code).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import orjson

__all__ = ["render_body"]


def render_body(trace_bytes: bytes, loki_bytes: bytes, prom_bytes: bytes, trace_hex: str) -> bytes:
    from correlator.config import load_settings
    from correlator.correlate import Correlator
    from correlator.ids import parse_trace_id
    from correlator.model import SourceReport, SourceStatus, Window
    from correlator.render import correlation_body
    from correlator.sources import SourceResult
    from correlator.sources.jaeger import parse_otlp_answer
    from correlator.sources.loki import parse_streams_body
    from correlator.sources.prometheus import parse_exemplars

    settings = load_settings(environ={})
    correlator = Correlator(settings, None, None, None)  # type: ignore[arg-type]  # its pure assembly only
    tid = parse_trace_id(trace_hex)
    ok = SourceReport(SourceStatus.OK, 1.0)
    trace = parse_otlp_answer(trace_bytes, tid.hex)
    assert trace is not None
    logs, _ = parse_streams_body(loki_bytes, settings.loki)
    found, _ = parse_exemplars(orjson.loads(prom_bytes), settings.prometheus.trace_id_labels,
                               settings.prometheus.span_id_labels)
    outcome = correlator._assemble(tid, Window(trace.start_ns, trace.end_ns), (ok, SourceResult(trace)),
                                   (ok, SourceResult(tuple(logs))), (ok, SourceResult(tuple(found))))
    return orjson.dumps(correlation_body(outcome, settings), option=orjson.OPT_NON_STR_KEYS)


if __name__ == "__main__":
    sys.path.insert(1, str(Path(__file__).resolve().parent))  # this file's spanmix, whatever checkout renders
    spanmix = importlib.import_module("spanmix")
    spans, lines, exes = (int(a) for a in sys.argv[1:4])
    trace, loki, prom = spanmix.bodies(spans, lines, exes)
    Path(sys.argv[4]).write_bytes(render_body(trace, loki, prom, spanmix.TRACE_ID))
