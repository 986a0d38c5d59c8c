"""The body's findings and ID lists made natively (native/src/body_json.rs) are the ones Python makes.

`render_findings_json` writes the bytes orjson writes for `render._finding`'s dicts (the body's dump: `api._dumps`), on
generated findings of every shape — evidence nested lists, tuples and dicts, non-str keys, floats of every magnitude
(the native writer's range and orjson's beyond it), ints beyond 64 bits, strings orjson refuses — and hands back what
it does not write; `ids_by_span` gives `join.ids_by_span`'s mapping. The whole JSON answer of the bench's P3
correlation is the same bytes with and without the extension. And two Python cuts of the same round, each against
the code it replaced: a standing's JSON (its window's texts made once) and the clock-skew summary (no properties).
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator import api, render, skew
from correlator.join import ids_by_span
from correlator.model import Confidence, Exemplar, Finding, LogLine, Match, Placement, Severity, Window
from correlator.skew import ClockEstimate, PairSkew
from correlator.sources import _native
from correlator.standing import Standing
from correlator.standing_run import add_standings, standing_body
from correlator.timeparams import rfc3339_ns

native_findings = getattr(_native.MODULE, "render_findings_json", None)
native_ids = getattr(_native.MODULE, "ids_by_span", None)
needs_native = pytest.mark.skipif(native_findings is None or native_ids is None,
                                  reason="the extension here has no body writers (pip install ./native)")

# Floats where orjson's text changes form (1e-5, 1e16: the native range's edges) and everywhere else.
_EDGES = [0.0, -0.0, 1e-5, -1e-5, 9.999999999999999e-06, 1e16, 9999999999999998.0, -9999999999999998.0, 1e15, 5e-324,
          1.7976931348623157e308, 0.1, 0.7246, 100.0, 6.9, math.inf, -math.inf, math.nan, 2.5e-05, 1e-07, 123456789.125]
_FLOATS = st.one_of(st.sampled_from(_EDGES), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(min_value=1e-6, max_value=1e17), st.floats(min_value=-1e17, max_value=-1e-6),
                    st.integers(0, (1 << 64) - 1).map(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]))
_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "quote \" and \\ back", "\x00\x1f\t\n", "é🙂", "ok"]))
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1),
                     st.integers(-(1 << 70), 1 << 70), _FLOATS, _TEXT)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
                            st.dictionaries(_TEXT, inner, max_size=4),
                            st.dictionaries(st.one_of(_TEXT, st.integers(-5, 5)), inner, max_size=3)),
    max_leaves=25)


@st.composite
def findings(draw: st.DrawFn) -> tuple[Finding, ...]:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        ids = draw(st.lists(st.sampled_from(["0000000000000001", "00000000000000aa", "x"]), max_size=5))
        evidence = draw(st.dictionaries(st.one_of(_TEXT, st.sampled_from(["self_ms", "share", "quotes"])), _VALUES, max_size=6))
        if draw(st.booleans()):  # the quotes' shape: a list of flat dicts
            evidence["quotes"] = [{"span_id": "0000000000000014", "source": "log", "level": draw(st.sampled_from([None, "info"])),
                                   "offset_ms": draw(_FLOATS), "text": draw(_TEXT)} for _ in range(draw(st.integers(0, 8)))]
        out.append(Finding(draw(st.sampled_from(["bottleneck", "fan_out", "gap"])), draw(st.sampled_from(list(Severity))),
                           draw(_TEXT), tuple(ids) if draw(st.booleans()) else ids,  # type: ignore[arg-type]
                           evidence))
    return tuple(out)


def _python_bytes(found: tuple[Finding, ...]) -> bytes | None:
    """What the body's dump writes for the Python dicts (None: orjson refuses them, with or without the option)."""
    try:
        return api._dumps([render._finding(f) for f in found])
    except orjson.JSONEncodeError:
        return None


@needs_native
@settings(max_examples=800, deadline=None)
@given(findings())
def test_generated_findings_are_written_as_the_body_dump_writes_them(found: tuple[Finding, ...]) -> None:
    expected = _python_bytes(found)
    written = render._findings_json(found)
    if expected is None:
        assert written is None  # orjson refuses a value: the body keeps the dicts, and its dump raises as before
        return
    assert written is not None
    assert orjson.dumps(written) == expected
    assert orjson.loads(orjson.dumps(written)) == orjson.loads(expected)


@needs_native
@settings(max_examples=3000, deadline=None)
@given(_FLOATS)
def test_every_float_is_written_as_orjson_writes_it(x: float) -> None:
    finding = (Finding("gap", Severity.INFO, "m", (), {"x": x, "in": [x, (x,)]}),)
    written = render._findings_json(finding)
    assert written is not None
    assert orjson.dumps(written) == api._dumps([render._finding(f) for f in finding])


@needs_native
def test_what_the_native_writer_does_not_write_is_handed_back_or_written_by_orjson() -> None:
    assert native_findings is not None
    severities = render._SEVERITY_VALUE
    odd = Finding("gap", "no such severity", "m", ())  # type: ignore[arg-type]
    assert native_findings((odd,), severities, render._dumps) is None
    assert native_findings((Finding("gap", Severity.INFO, "m", iter(["a"])),), severities, render._dumps) is None  # type: ignore[arg-type]
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    assert native_findings((Finding("gap", Severity.INFO, "m", (), {"d": deep}),), severities, render._dumps) is None
    with pytest.raises(AttributeError):
        native_findings((object(),), severities, render._dumps)
    lone = Finding("gap", Severity.INFO, "m", (), {"t": "\ud800"})
    assert render._findings_json((lone,)) is None  # orjson refuses a lone surrogate: left to the body's dump
    with pytest.raises(orjson.JSONEncodeError):
        api._dumps({"findings": [render._finding(lone)]})

    class Text(str):
        pass

    from types import MappingProxyType
    odd_keys: dict[Any, Any] = {"k": Text("v"), 1: 2.5}
    shapes = (Finding("gap", Severity.INFO, Text("m"), (Text("a"),), MappingProxyType(odd_keys)),
              Finding("gap", Severity.INFO, "m", (), {Text("k"): 1}))
    written = render._findings_json(shapes)
    assert written is not None and orjson.dumps(written) == api._dumps([render._finding(f) for f in shapes])
    assert render._findings_json(list(shapes)) is None  # not the correlation's tuple


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
    assert not places or (native_ids is not None and native_ids(items, tuple(places)[:-1]) is None)
    with pytest.raises(ValueError):
        render._ids_by_span(items, (*places, Placement("a", Match.SPAN_ID)))  # as `zip(strict=True)` raises


@needs_native
def test_the_p3_json_answer_is_the_same_bytes_with_and_without_the_extension() -> None:
    """The bench's correlation (20 spans, lines on them, two exemplars, the findings with their quotes) written as the
    JSON answer (`findings_as_json`, the standings added) and as the page's and the text's list body."""
    from tests.test_render_logs_native import _bench_outcome

    settings_, outcome = _bench_outcome(20, 20)
    assert outcome.correlation.findings and outcome.correlation.exemplars

    def answer(**flags: bool) -> bytes:
        body = render.correlation_body(outcome, settings_, **flags)
        add_standings(body, outcome.correlation, ())
        return api._dumps(body)

    fast = render.correlation_body(outcome, settings_, spans_as_json=True, lines_as_json=True, findings_as_json=True)
    assert isinstance(fast["findings"], orjson.Fragment)
    assert isinstance(render.correlation_body(outcome, settings_)["findings"], list)  # the page and the text read it
    written = answer(spans_as_json=True, lines_as_json=True, findings_as_json=True)
    assert written == answer()
    with mock.patch.object(_native, "MODULE", None):
        assert answer(spans_as_json=True, lines_as_json=True, findings_as_json=True) == written
        assert answer() == written


def test_ci_runs_these_through_the_native_writers() -> None:
    """CI (CORRELATOR_REQUIRE_NATIVE=1) builds the extension from this tree: the comparisons above must not skip there."""
    if os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1":
        pytest.skip("the native path is optional here")
    assert native_findings is not None and native_ids is not None, "the installed extension predates body_json.rs"


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
