"""Clocks that disagree: skew injected on one service is recovered within its bounds, and log placement follows.

The trace: api-gateway SERVER (0-145 ms) → CLIENT POST /auth (2-16 ms) → auth-service SERVER (4-14 ms), a
second call (30-40 → 31-39 ms), and course-service SERVER (20-140 ms) called directly. auth-service's clock
runs `skew` ahead: its spans are reported shifted by that much, its log lines are stamped on the reference clock.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from correlator.config import load_settings
from correlator.correlate import Correlator
from correlator.ids import parse_trace_id
from correlator.join import join
from correlator.model import Confidence, LogLine, Match, Span, Trace
from correlator.render import correlation_body
from correlator.skew import estimate_clocks
from correlator.sources.files import FileLogSource, FileTraceSource
from correlator.spantree import build_tree
from tests.test_correlate import FakePrometheus

MS = 1_000_000
T0 = 1_795_572_505_053_254_099
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SKEWS = [50 * MS, -50 * MS, 2000 * MS, -2000 * MS]


def trace(skew: int) -> Trace:
    def span(sid: str, parent: str | None, service: str, start_ms: float, end_ms: float, kind: str, shift: int = 0) -> Span:
        return Span(sid * 16, parent * 16 if parent else None, service, f"op-{sid}",
                    T0 + int(start_ms * MS) + shift, T0 + int(end_ms * MS) + shift, kind=kind)
    return Trace(TRACE, (
        span("a", None, "api-gateway", 0, 145, "server"),
        span("b", "a", "api-gateway", 2, 16, "client"),
        span("c", "b", "auth-service", 4, 14, "server", skew),
        span("d", "a", "api-gateway", 30, 40, "client"),
        span("e", "d", "auth-service", 31.5, 38, "server", skew),
        span("f", "a", "course-service", 20, 140, "server"),
    ))


@pytest.mark.parametrize("skew", SKEWS, ids=["+50ms", "-50ms", "+2s", "-2s"])
def test_the_injected_skew_is_recovered_within_its_bounds(skew: int) -> None:
    estimate = estimate_clocks(trace(skew).spans, "api-gateway")
    pair = next(p for p in estimate.pairs if (p.caller, p.server) == ("api-gateway", "auth-service"))
    assert pair.pairs == 2 and pair.consistent and pair.skewed
    assert pair.low_ns <= skew <= pair.high_ns
    assert pair.high_ns - pair.low_ns == int(3.5 * MS)  # the tightest bounds: 1.5 ms to start (2nd call), 2 ms to end
    offset, margin = estimate.offsets["auth-service"]
    assert abs(offset - skew) <= margin
    # course-service's only pair (parent server span, no client) allows zero: no correction claimed.
    assert "course-service" not in estimate.offsets
    # Both auth spans start before / end after their caller's: flagged, as only the clocks explain it.
    assert set(estimate.skewed_spans) == {"c" * 16, "e" * 16}


def test_no_skew_claims_nothing() -> None:
    estimate = estimate_clocks(trace(0).spans, "api-gateway")
    assert estimate.offsets == {} and estimate.skewed_spans == () and not any(p.skewed for p in estimate.pairs)


def test_a_server_longer_than_its_caller_is_not_explained_by_skew() -> None:
    spans = list(trace(0).spans)
    spans[2] = replace(spans[2], end_ns=spans[1].end_ns + 5 * MS)  # auth's span outlasts the call by more than it started late
    spans[2] = replace(spans[2], start_ns=spans[1].start_ns - 1 * MS)
    estimate = estimate_clocks(spans, "api-gateway")
    assert estimate.impossible_spans == ("c" * 16,) and "auth-service" not in estimate.offsets


def auth_line(at_ms: float, traced: bool) -> LogLine:
    text = f"level=info msg=validated trace_id={TRACE}" if traced else "level=info msg=validated"
    return LogLine(f"auth-{at_ms}-{traced}", T0 + int(at_ms * MS), text, "auth-service", "info", {"service_name": "auth-service"})


@pytest.mark.parametrize("skew", SKEWS, ids=["+50ms", "-50ms", "+2s", "-2s"])
def test_log_placement_follows_the_estimate(skew: int) -> None:
    """A line auth wrote at 10 ms (reference clock) lands on the first auth span, at 35 ms on the second —
    where the fixed 50 ms margin alone loses them once the clocks are 2 s apart."""
    tree = build_tree(trace(skew))
    lines = [auth_line(10, True), auth_line(35, True)]
    clocks = estimate_clocks(list(tree.by_id.values()), "api-gateway").offsets
    placed, _ = join(tree, lines, [], 50.0, clocks)
    assert [(p.span_id, p.match) for p in placed] == [("c" * 16, Match.TIME), ("e" * 16, Match.TIME)]
    without, _ = join(tree, lines, [], 50.0)
    if abs(skew) > 50 * MS:
        assert [p.match for p in without] == [Match.TRACE, Match.TRACE]


@pytest.mark.parametrize("skew", SKEWS, ids=["+50ms", "-50ms", "+2s", "-2s"])
async def test_the_correlation_reports_the_skew_and_keeps_the_reported_times(skew: int) -> None:
    settings = load_settings(environ={"CORRELATOR_JOIN_UNTRACED_OVERLAP_CHECK": "false"})
    the_trace = trace(skew)
    lines = [auth_line(10, True), auth_line(35, False)]
    correlator = Correlator(settings, FileTraceSource(the_trace), FileLogSource(lines, settings.loki), FakePrometheus(),
                            wall_clock=lambda: T0 / 1e9 + 3600)
    outcome = await correlator.correlate(parse_trace_id(TRACE))
    body = correlation_body(outcome, settings)
    (pair,) = [p for p in body["summary"]["clock_skew"] if p["server"] == "auth-service"]
    assert pair["min_ms"] <= skew / MS <= pair["max_ms"] and pair["pairs"] == 2 and pair["skewed"] and pair["applied_to_logs"]
    (finding,) = [f for f in body["findings"] if f["kind"] == "clock_skew"]
    assert set(finding["span_ids"]) == {"c" * 16, "e" * 16} and "auth-service's clock runs" in finding["message"]
    spans = {s["span_id"]: s for s in body["spans"]}
    assert spans["c" * 16]["start_ms"] - spans["a" * 16]["start_ms"] == round((4 * MS + skew) / MS, 3)  # never shifted
    by_line = {entry["line"]: entry for entry in body["logs"]}
    assert by_line[f"level=info msg=validated trace_id={TRACE}"]["span_id"] == "c" * 16
    inferred = by_line["level=info msg=validated"]
    assert (inferred["match"], inferred["span_id"], inferred["confidence"]) == ("inferred", "e" * 16, Confidence.MEDIUM.value)
