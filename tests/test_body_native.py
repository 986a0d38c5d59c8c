"""The body's ID lists made natively (native/src/body_json.rs) are the ones Python makes, and two Python cuts of the
same round give what the code they replaced gave.

`ids_by_span` gives `join.ids_by_span`'s mapping on generated placements (lines and exemplars, spans repeated, none);
the whole JSON answer of the bench's P3 correlation is the same bytes with and without the extension. A standing's
JSON (its window's texts made once) and the clock-skew summary (PairSkew's properties written out) against copies of
the former code on generated values.
"""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator import api, render, skew
from correlator.join import ids_by_span
from correlator.model import Confidence, Exemplar, LogLine, Match, Placement, Window
from correlator.skew import ClockEstimate, PairSkew
from correlator.sources import _native
from correlator.standing import Standing
from correlator.standing_run import add_standings, standing_body
from correlator.timeparams import rfc3339_ns

native_ids = getattr(_native.MODULE, "ids_by_span", None)
needs_native = pytest.mark.skipif(native_ids is None, reason="the extension here has no `ids_by_span` (pip install ./native)")

_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "quote \" and \\ back", "\x00\x1f\t\n", "é🙂", "ok"]))


_PLACES = st.builds(Placement, st.one_of(st.none(), st.sampled_from(["a", "b", "c"])), st.sampled_from(list(Match)),
                    st.one_of(st.none(), st.sampled_from(list(Confidence))))


@needs_native
@settings(max_examples=400, deadline=None)
@given(st.lists(_PLACES, max_size=30), st.booleans())
def test_ids_by_span_is_the_joins(places: list[Placement], exemplars: bool) -> None:
    items: tuple[Any, ...] = tuple(
        Exemplar(f"ex-{i}", "m", {}, {}, 0.5, i, "t") if exemplars else LogLine(f"log-{i}", i, "line")
        for i in range(len(places)))
    expected = ids_by_span(items, tuple(places))
    got = render._ids_by_span(items, tuple(places))
    assert got == expected
    assert list(got) == list(expected)  # the spans in the same order
    if items:
        assert native_ids is not None and native_ids(items, tuple(places)) == expected  # the one answering here
    assert not places or (native_ids is not None and native_ids(items, tuple(places)[:-1]) is None)
    if places:  # (no items: no mapping, whatever the placements, as the join's)
        with pytest.raises(ValueError):
            render._ids_by_span(items, (*places, Placement("a", Match.SPAN_ID)))  # as `zip(strict=True)` raises


@needs_native
def test_the_p3_answer_is_the_same_bytes_with_and_without_the_extension() -> None:
    """The bench's correlation (20 spans, lines on them, two exemplars) as the JSON answer writes it (spans and lines as
    JSON, the standings added) and as the page's and the text's list body."""
    from tests.test_render_logs_native import _bench_outcome

    settings_, outcome = _bench_outcome(20, 20)
    assert outcome.correlation.exemplars and outcome.correlation.logs

    def answer(**flags: bool) -> bytes:
        body = render.correlation_body(outcome, settings_, **flags)
        add_standings(body, outcome.correlation, ())
        return api._dumps(body)

    written = answer(spans_as_json=True, lines_as_json=True)
    assert b'"log_ids":["log-' in written and b'"exemplar_ids":["ex-' in written
    assert written == answer()
    with mock.patch.object(_native, "MODULE", None):
        assert answer(spans_as_json=True, lines_as_json=True) == written
        assert answer() == written


def test_ci_runs_these_through_the_native_writers() -> None:
    """CI (CORRELATOR_REQUIRE_NATIVE=1) builds the extension from this tree: the comparisons above must not skip there."""
    if os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1":
        pytest.skip("the native path is optional here")
    assert native_ids is not None, "the installed extension predates native/src/body_json.rs: pip install ./native"


def _standing_body_before(standing: Standing) -> dict[str, Any]:
    """`standing_body` as it was (each HH:MM formatted apart): the reference."""
    def hhmm(ns: int) -> str:
        return rfc3339_ns(ns)[11:16]

    if not standing.known or standing.faster_share is None:
        message = f"unknown: {standing.reason}"
    else:
        share = f"{'at least ' if standing.at_least else '~'}{standing.faster_share:.0%}"
        message = (f"slower than {share} of {standing.series} between {hhmm(standing.window.start_ns)} and "
                   f"{hhmm(standing.window.end_ns)} UTC ({standing.observations:.0f} observations; bucket {standing.bucket})")
    return {"known": standing.known, "series": standing.series, "bucket": standing.bucket,
            "faster_share": None if standing.faster_share is None else round(standing.faster_share, 4),
            "at_least": standing.at_least, "observations": standing.observations,
            "window": {"start": rfc3339_ns(standing.window.start_ns), "end": rfc3339_ns(standing.window.end_ns)},
            "reason": standing.reason, "message": message}


_NS = st.one_of(st.integers(0, 4_102_444_800 * 10**9), st.integers(-(10**18), 10**18))


@settings(max_examples=600, deadline=None)
@given(st.builds(Standing, _TEXT, st.booleans(), _TEXT, st.builds(Window, _NS, _NS), st.one_of(st.none(), _TEXT),
                 st.one_of(st.none(), st.floats(0, 1)), st.booleans(), st.floats(0, 1e9), st.one_of(st.none(), _TEXT)))
def test_a_standings_json_is_what_it_was(standing: Standing) -> None:
    assert orjson.dumps(standing_body(standing)) == orjson.dumps(_standing_body_before(standing))


def _skew_summary_before(estimate: ClockEstimate) -> list[dict[str, object]]:
    """`clock_skew_summary` as it was (through PairSkew's properties): the reference."""
    return [{"caller": p.caller, "server": p.server, "offset_ms": skew._ms(p.offset_ns) if p.consistent else None,
             "min_ms": skew._ms(min(p.low_ns, p.high_ns)), "max_ms": skew._ms(max(p.low_ns, p.high_ns)), "pairs": p.pairs,
             "consistent": p.consistent, "skewed": p.skewed,
             "applied_to_logs": p.server in estimate.offsets or p.caller in estimate.offsets}
            for p in estimate.pairs]


_OFFSET = st.one_of(st.integers(-(10**9), 10**9), st.integers(-5, 5).map(lambda k: k * 1000 + 500), st.integers(-(1 << 52), 1 << 52))


@settings(max_examples=600, deadline=None)
@given(st.lists(st.builds(PairSkew, st.sampled_from(["a", "b"]), st.sampled_from(["b", "c"]), _OFFSET, _OFFSET,
                          st.integers(1, 9)), max_size=5),
       st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.tuples(_OFFSET, _OFFSET), max_size=3))
def test_the_clock_skew_summary_is_what_it_was(pairs: list[PairSkew], offsets: dict[str, tuple[int, int]]) -> None:
    estimate = ClockEstimate(tuple(pairs), offsets)
    assert orjson.dumps(skew.clock_skew_summary(estimate)) == orjson.dumps(_skew_summary_before(estimate))
    assert skew.clock_skew_summary(None) == []
