"""Session 10's P3 cuts (docs/performance-p3.md "Session 10: the unpriced rest") answer exactly as the code they replace:
the standing lookup's root span, series label and standings, and the Loki memo hashed once per entry."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.config import LokiSettings
from correlator.model import Exemplar, Span, Window
from correlator.sources import _native, loki
from correlator.standing import Standing, series_label, standing_of, unknown, window_of
from correlator.standing_run import _root_of

_SPAN_IDS = st.sampled_from(["a" * 16, "b" * 16, "0" * 15 + "1", "c" * 16])
_SPANS = st.lists(st.builds(Span, span_id=_SPAN_IDS, parent_span_id=st.one_of(st.none(), _SPAN_IDS), service=st.just("s"),
                            operation=st.just("op"), start_ns=st.integers(0, 3), end_ns=st.just(10)), min_size=1, max_size=8)


@settings(max_examples=1000, deadline=None)
@given(_SPANS)
def test_the_root_is_the_one_the_former_min_chose(spans: list[Span]) -> None:
    """The same span object (ties on start and ID: the first in the trace), with or without a span lacking a parent."""
    assert _root_of(spans) is min(spans, key=lambda sp: (sp.parent_span_id is not None, sp.start_ns, sp.span_id))


def _former_series_label(metric: str, series: Mapping[str, Any]) -> str:
    base = metric[: -len("_bucket")] if metric.endswith("_bucket") else metric
    labels = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(series.items()) if k not in ("__name__", "le"))
    return f"{base}{{{labels}}}"


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["http_server_duration_seconds_bucket", "x_bucket", "requests_total", "_bucket", ""]),
       st.dictionaries(st.sampled_from(["__name__", "le", "service", "route", "a", "é", "\"q\""]), st.text(max_size=6), max_size=5))
def test_the_series_label_is_written_as_before(metric: str, series: dict[str, str]) -> None:
    assert series_label(metric, series) == _former_series_label(metric, series)
    assert series_label(metric, dict(reversed(list(series.items())))) == _former_series_label(metric, series)  # any order


def test_a_series_label_that_cannot_be_a_cache_key_is_still_written() -> None:
    series: dict[str, Any] = {"service": ["not", "hashable"], "le": "1"}
    assert series_label("m_bucket", series) == _former_series_label("m_bucket", series) == 'm{service=["not", "hashable"]}'


def _exemplar(value: float) -> Exemplar:
    return Exemplar(f"ex-{value}", "h_bucket", {"__name__": "h_bucket", "service": "api", "le": "1"}, {}, value,
                    1_795_572_505_000_000_000, "a" * 32, "b" * 16)


@pytest.mark.parametrize("value", [0.05, 0.3, 7.0])
def test_standings_are_the_dataclass_s_own(value: float) -> None:
    """Made without the frozen `__init__`: equal (fields, hash, repr) to the one the constructor makes."""
    ex = _exemplar(value)
    made = standing_of(ex, [("0.1", 50.0), ("1", 99.0), ("+Inf", 100.0)])
    assert made.known
    expected = Standing(ex.id, True, 'h{service="api"}', window_of(ex), made.bucket, made.faster_share, made.at_least, 100.0)
    assert (made, hash(made), repr(made)) == (expected, hash(expected), repr(expected))
    gone = unknown(ex, "why")
    expected = Standing(ex.id, False, 'h{service="api"}', Window(ex.timestamp_ns - 150_000_000_000,
                                                                  ex.timestamp_ns + 150_000_000_000), reason="why")
    assert (gone, hash(gone), repr(gone)) == (expected, hash(expected), repr(expected))


_native_only = pytest.mark.skipif(_native.MODULE is None and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
                                  reason="correlator_native is not installed (pip install ./native)")


def _answer(entries: list[tuple[int, str]]) -> bytes:
    values = [[str(ts), line, {"structuredMetadata": {"trace_id": "a" * 32}}] for ts, line in entries]
    return orjson.dumps({"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"],
                                                       "result": [{"stream": {"service_name": "svc"}, "values": values}]}})


@_native_only
def test_a_memo_past_its_first_size_gives_what_each_answer_gives_alone() -> None:
    """Two lookups of 300 entries each, 150 shared (the table starts at 64 entries and grows): each answer reads as it
    does alone, the shared entries are the first answer's very objects, and every entry is remembered once."""
    settings_ = LokiSettings()
    first = [(1_000 + n, f"level=info msg=\"first {n}\" span_id={n:016x}") for n in range(300)]
    second = first[150:] + [(5_000 + n, f"level=warn msg=\"second {n}\"") for n in range(150)]
    memo = loki._new_memo()
    read_first = loki.parse_streams_body(_answer(first), settings_, memo)[0]
    read_second = loki.parse_streams_body(_answer(second), settings_, memo)[0]
    assert read_first == loki.parse_streams_body(_answer(first), settings_)[0]
    assert read_second == loki.parse_streams_body(_answer(second), settings_)[0]
    assert all(a is b for a, b in zip(read_first[150:], read_second[:150], strict=True))
    assert len(memo) == 450


@_native_only
def test_a_renewed_reader_reads_as_a_new_one() -> None:
    """A native reader given back after an answer is renewed for the next (`LokiLines.renew`): it remembers nothing of
    the last answer's metadata or strings, so answers of other metadata and levels read as with a new reader."""
    settings_ = LokiSettings()
    prepared = loki._prepared(settings_)
    prepared.idle.clear()
    one = _answer([(1_000 + n, f"level=info msg=\"{n}\" span_id={n:016x}") for n in range(5)])
    other = orjson.dumps({"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"],
                                                        "result": [{"stream": {"service_name": "svc", "level": "WARN"},
                                                                    "values": [["7", "no level here", {"structuredMetadata": {
                                                                        "trace_id": "b" * 32, "span_id": "c" * 16}}]]}]}})
    assert loki.parse_streams_body(one, settings_)[0] == loki_v1_lines(one, settings_)
    assert len(prepared.idle) == 1
    reader = prepared.idle[0]
    for raw in (other, one, other):
        assert loki.parse_streams_body(raw, settings_)[0] == loki_v1_lines(raw, settings_)
        assert prepared.idle == [reader]  # the same reader, renewed each time


def loki_v1_lines(raw: bytes, settings_: LokiSettings) -> Any:
    from tests.reference import loki_v1

    return loki_v1.parse_streams_body(raw, settings_)[0]
