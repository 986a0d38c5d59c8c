"""`parse_exemplars` (its loop inlined, issue 14) gives what it gave before (`tests/reference/prometheus_v1.py`).

Generated answers: labels as strings, numbers, null; trace IDs valid, padded, short, bad or absent under each
configured name; span IDs of every spelling; timestamps as floats (milli-, micro-second, negative, huge), ints,
strings and junk; values as strings (Inf spellings, NaN), numbers and junk. Same exemplars or the same error.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator.sources.prometheus import parse_exemplars
from tests.conftest import FIXTURES
from tests.reference import prometheus_v1

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_NAMES = ("trace_id", "traceID", "trace.id")
SPAN_NAMES = ("span_id", "spanID", "span.id")

label_text = st.one_of(st.sampled_from([TRACE, TRACE.lstrip("4"), "0" + TRACE, "xyz", "", "00f067aa0ba902b7", "7"]), st.text(max_size=6))
label_value = st.one_of(label_text, st.integers(-5, 5), st.none(), st.floats(allow_nan=False))
label_name = st.one_of(st.sampled_from([*TRACE_NAMES, *SPAN_NAMES, "le", "other"]), st.text(max_size=3))
timestamps = st.one_of(
    st.integers(0, 2_000_000_000_000).map(lambda ms: ms / 1000),
    st.floats(min_value=-10.0, max_value=1e12, allow_nan=False),
    st.integers(-5, 2_000_000_000),
    st.sampled_from(["1795572505.198", "1795572505", "Infinity", "1e3", " 12"]),
)
values = st.one_of(st.sampled_from(["0.12", "+Inf", "-Inf", "Inf", "NaN", "1e309", "junk", "0", "-0.0"]),
                   st.floats(allow_nan=True), st.integers(-3, 3))
exemplar = st.fixed_dictionaries(
    {"labels": st.one_of(st.dictionaries(label_name, label_value, max_size=4), st.none())},
    optional={"timestamp": timestamps, "value": values},
)
series = st.fixed_dictionaries(
    {"seriesLabels": st.dictionaries(st.sampled_from(["__name__", "service", "le"]), label_text, max_size=3),
     "exemplars": st.lists(exemplar, max_size=6)},
)


def outcome(parse: Any, body: Any) -> Any:
    try:
        found, skipped = parse(body, TRACE_NAMES, SPAN_NAMES)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        return ("error", type(exc), str(exc))
    # NaN != NaN: compare the exemplars' reprs, which spell every float alike.
    return [repr(e) for e in found], skipped


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(series, max_size=3))
def test_generated_answers_parse_as_before(data: list[dict[str, Any]]) -> None:
    body = {"status": "success", "data": data}
    assert outcome(parse_exemplars, body) == outcome(prometheus_v1.parse_exemplars, body)


def test_every_recorded_answer_parses_as_before() -> None:
    answers = [p for p in FIXTURES.rglob("*.json") if "prometheus" in str(p) and "exemplar" in p.name]
    assert answers, "no recorded exemplar answers found"
    compared = 0
    for path in answers:
        body = orjson.loads(path.read_bytes())
        if isinstance(body, dict) and "body" in body and isinstance(body["body"], dict):
            body = body["body"]
        got = outcome(parse_exemplars, body)
        assert got == outcome(prometheus_v1.parse_exemplars, body), path
        compared += isinstance(got, tuple) and len(got[0]) > 0
    assert compared > 0


def test_inf_values_and_fast_timestamps_are_read() -> None:
    body = {"status": "success", "data": [{"seriesLabels": {"__name__": "m"}, "exemplars": [
        {"labels": {"trace_id": TRACE}, "value": "+Inf", "timestamp": 1795572505.198},
        {"labels": {"traceID": TRACE, "span_id": "7"}, "value": "0.5", "timestamp": 1795572505.1987},
    ]}]}
    found, skipped = parse_exemplars(body, TRACE_NAMES, SPAN_NAMES)
    assert skipped == 0
    assert [e.value for e in found] == [math.inf, 0.5]
    assert [e.timestamp_ns for e in found] == [1795572505_198_000_000, 1795572505_198_700_000]
    assert found[1].span_id == "0000000000000007"
