"""The native loop over a series' exemplars (native/src/exemplars.rs) gives what the Python loop gives.

`parse_exemplars` hands each series to `correlator_native.exemplar_series` first; it either takes the whole series or
hands it back untouched. Generated answers of the usual shape (most series taken natively) and odd ones (most handed
back) must parse exactly as the code before it did (`tests/reference/prometheus_v1.py`), and the native function must
have taken many series itself — else it was not tested.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator.ids import normalise_span_id
from correlator.sources import _native, prometheus
from tests.reference import prometheus_v1
from tests.test_prometheus_same import SPAN_NAMES, TRACE, TRACE_NAMES, outcome
from tests.test_prometheus_same import series as odd_series

pytestmark = pytest.mark.skipif(
    not hasattr(_native.MODULE, "exemplar_series") and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
    reason="correlator_native is not installed, or built before exemplars.rs (pip install ./native)")

_ids = st.sampled_from([TRACE, TRACE.upper(), "0" * 32, "xyz", "", "00f067aa0ba902b7", "7", "4bf92f3577b34da6a3ce929d0e0e473", "é"])
_labels = st.dictionaries(st.sampled_from([*TRACE_NAMES, *SPAN_NAMES, "le", "other", "ключ"]), _ids | st.text(max_size=4), max_size=4)
_plain_exemplar = st.fixed_dictionaries({
    "labels": _labels | st.just({}) | st.none(),
    "timestamp": st.integers(0, 9_999_999_999_999).map(lambda ms: ms / 1000) | st.sampled_from([0.0, 1795572505.198, 1e-3]),
    "value": st.sampled_from(["0.12", "+Inf", "-Inf", "Inf", "NaN", "1e309", "0", "-0.0", " 7 ", "1_0", "٣"]),
})
_odd_exemplar = st.fixed_dictionaries({"labels": _labels}, optional={
    "timestamp": st.one_of(st.floats(allow_nan=True), st.integers(-5, 2**64), st.sampled_from(["1795572505.198", "x", None]),
                           st.integers(0, 2_000_000_000).map(lambda ms: ms / 1000 + 0.0005)),
    "value": st.one_of(st.sampled_from(["junk", "", "inf"]), st.floats(), st.integers(), st.none()),
})
_plain_series = st.fixed_dictionaries({
    "seriesLabels": st.dictionaries(st.sampled_from(["__name__", "service", "le"]), st.text(max_size=4), max_size=3),
    "exemplars": st.lists(st.integers(0, 19).flatmap(lambda n: _odd_exemplar if n == 0 else _plain_exemplar), max_size=8),
})

TAKEN: list[int] = []


def _taken_natively(data: list[dict[str, Any]]) -> int:
    """How many of the series the native loop takes (called directly, on the caches `parse_exemplars` would build)."""
    native = _native.MODULE.exemplar_series  # type: ignore[union-attr]
    taken = 0
    for series in data:
        labels = series.get("seriesLabels") or {}
        metric = str(labels.get("__name__", ""))
        out: list[Any] = []
        if native(series.get("exemplars") or (), metric, {str(k): str(v) for k, v in labels.items()},
                  f"{metric}|{sorted(labels.items())}|", TRACE_NAMES, SPAN_NAMES, {}, {}, prometheus._trace_id_or_none,
                  normalise_span_id, prometheus._INFINITIES, prometheus._new_exemplar, out) is not None:
            taken += 1
        else:
            assert out == [], "a series handed back must add nothing"
    return taken


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 9).flatmap(lambda n: odd_series if n == 0 else _plain_series), min_size=1, max_size=3))
def test_generated_answers_parse_as_the_python_loop_did(data: list[dict[str, Any]]) -> None:
    body = {"status": "success", "data": data}
    assert outcome(prometheus.parse_exemplars, body) == outcome(prometheus_v1.parse_exemplars, body)
    TAKEN.append(_taken_natively(data))


def test_the_generated_series_were_mostly_taken_natively() -> None:
    """Run after the generated ones (same module, in order)."""
    if not TAKEN:
        pytest.skip("run with test_generated_answers_parse_as_the_python_loop_did")
    assert sum(TAKEN) >= 200, sum(TAKEN)


def test_the_bench_answer_is_taken_natively_and_parses_the_same() -> None:
    from bench.fake_backends import exemplars

    body = orjson.loads(exemplars(2000))
    assert _taken_natively(body["data"]) == len(body["data"]) == 1
    got = outcome(prometheus.parse_exemplars, body)
    assert got == outcome(prometheus_v1.parse_exemplars, body) and len(got[0]) == 2000
