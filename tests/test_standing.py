"""Where one trace stands in its series, from the histogram's buckets (pure part)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from correlator.model import Correlation, Exemplar, Match, Placement, Span, Trace, Window
from correlator.standing import Standing, histogram_query, standing_of, unknown
from correlator.standing_run import add_standings, standing_body

T = 1_795_572_505_000_000_000  # 2026-11-25T02:08:25Z
SERIES = {"__name__": "http_server_duration_seconds_bucket", "service": "api-gateway", "route": "/api/courses", "le": "0.5"}
BUCKETS = [("0.1", 50.0), ("0.25", 90.0), ("0.5", 97.0), ("1", 99.0), ("+Inf", 100.0)]


def exemplar(value: float, metric: str = "http_server_duration_seconds_bucket", series: dict[str, str] | None = None) -> Exemplar:
    return Exemplar(f"ex-{value}", metric, series if series is not None else SERIES, {}, value, T, "a" * 32, "b" * 16)


def test_the_share_faster_is_interpolated_inside_the_exemplar_s_bucket() -> None:
    standing = standing_of(exemplar(0.3), list(reversed(BUCKETS)))  # any order
    assert standing.known and standing.bucket == "(0.25, 0.5]" and standing.observations == 100
    assert standing.faster_share == pytest.approx((90 + 0.2 * 7) / 100)
    assert standing_body(standing)["message"] == (
        'slower than ~91% of http_server_duration_seconds{route="/api/courses",service="api-gateway"} '
        "between 02:05 and 02:10 UTC (100 observations; bucket (0.25, 0.5])")


def test_the_first_and_the_inf_bucket() -> None:
    assert standing_of(exemplar(0.05), BUCKETS).faster_share == pytest.approx(0.25)  # half of the 50 below 0.1
    top = standing_of(exemplar(7.0), BUCKETS)
    assert (top.bucket, top.faster_share, top.at_least) == ("(1, +Inf]", 0.99, True)
    assert standing_body(top)["message"].startswith("slower than at least 99% of")


@pytest.mark.parametrize(("ex", "buckets", "reason"), [
    (exemplar(0.3), [("0.1", 0.0), ("+Inf", 0.0)], "the histogram counted no observations in the 5 minutes around it"),
    (exemplar(0.3), [], "no histogram buckets for this series in the 5 minutes around it"),
    (exemplar(0.3), [("x", 1.0), ("+Inf", 2.0)], "the histogram's `le` labels are not numbers"),
])
def test_unknown_says_why(ex: Exemplar, buckets: list[tuple[str, float]], reason: str) -> None:
    standing = standing_of(ex, buckets)
    assert not standing.known and standing.reason == reason
    assert standing_body(standing)["message"] == f"unknown: {reason}"


def test_only_histogram_bucket_series_are_asked_about_and_labels_are_escaped() -> None:
    assert histogram_query(exemplar(1.0, "http_requests_total", {"service": "a"})) is None
    assert histogram_query(exemplar(1.0, "x_bucket", {"__name__": "x_bucket", "svc": 'a"b\\c'})) is None  # no le
    query = histogram_query(exemplar(1.0, "x_bucket", {"__name__": "x_bucket", "svc": 'a"b\\c', "le": "1"}))
    assert query == 'sum by (le) (increase({__name__="x_bucket",svc="a\\"b\\\\c"}[5m]))'


def test_the_trace_s_own_standing_is_that_of_its_root_span_exemplar() -> None:
    root, child = Span("1" * 16, None, "api-gateway", "GET /", T - 10**9, T), Span("2" * 16, "1" * 16, "db", "q", T - 10**9, T)
    on_root, on_child, counter = exemplar(0.3), exemplar(0.05), exemplar(1.0, "http_requests_total", {"service": "a"})
    correlation = Correlation("a" * 32, Window(T - 10**9, T), Trace("a" * 32, (root, child)), (), (),
                              (on_child, on_root, counter),
                              (Placement(child.span_id, Match.SPAN_ID), Placement(root.span_id, Match.SPAN_ID),
                               Placement(None, Match.TRACE)), (), (), {})
    standings = (standing_of(on_child, BUCKETS), standing_of(on_root, BUCKETS), unknown(counter, "not a histogram"))
    body: dict[str, Any] = {"exemplars": [{"id": on_child.id}, {"id": on_root.id}, {"id": counter.id}]}
    add_standings(body, correlation, standings)
    assert body["standing"]["faster_share"] == pytest.approx(0.914)
    assert [e["standing"]["known"] for e in body["exemplars"]] == [True, True, False]
    empty: dict[str, Any] = {"exemplars": []}
    add_standings(empty, correlation, ())
    assert empty["standing"] == {"known": False, "message": "unknown: this trace left no exemplar on a latency histogram"}


def test_a_root_span_stands_in_as_an_exemplar_of_a_configured_histogram() -> None:
    from correlator.standing import root_exemplar

    span = Span("1" * 16, None, 'api"gw', "GET /x", T - 250 * 10**6, T)
    ms = root_exemplar('traces_span_metrics_duration_milliseconds_bucket{service_name="$service",span_name="$operation"}', span)
    assert ms is not None and ms.value == 250.0 and ms.timestamp_ns == T
    assert histogram_query(ms) == ('sum by (le) (increase({__name__="traces_span_metrics_duration_milliseconds_bucket",'
                                   'service_name="api\\"gw",span_name="GET /x"}[5m]))')
    seconds = root_exemplar('http_server_duration_seconds_bucket{service="$service"}', span)
    assert seconds is not None and seconds.value == 0.25
    assert root_exemplar('requests_bucket{service="$service"}', span) is None  # no unit in the name


async def test_no_lookup_when_prometheus_just_failed_or_no_time_is_left() -> None:
    from correlator.config import load_settings
    from correlator.model import SourceReport, SourceStatus
    from correlator.standing_run import StandingLookup

    class Refusing:
        async def bucket_counts(self, *args: object) -> list[tuple[str, float]]:
            raise AssertionError("Prometheus must not be asked")

    ex = exemplar(0.3)
    failed = Correlation("a" * 32, Window(T, T), None, (), (), (ex,), (Placement(None, Match.TRACE),), (), (),
                         {"prometheus": SourceReport(SourceStatus.TIMEOUT, 2000.0)})
    lookup = StandingLookup(load_settings(environ={}))
    [standing] = await lookup.lookup(Refusing(), failed, None)  # type: ignore[arg-type]
    assert standing_body(standing)["message"] == "unknown: Prometheus timeout in this correlation"
    answered = Correlation("a" * 32, Window(T, T), None, (), (), (ex,), (Placement(None, Match.TRACE),), (), (),
                           {"prometheus": SourceReport(SourceStatus.OK, 20.0)})
    [late] = await lookup.lookup(Refusing(), answered, None, budget=0.0)  # type: ignore[arg-type]
    assert standing_body(late)["message"] == "unknown: no time left in the deadline"


async def test_standing_queries_take_prometheus_slots_and_a_refusal_is_not_remembered() -> None:
    """A flood of correlations must not reach Prometheus through their standings: each query takes a slot of
    the Prometheus bulkhead; refused, the standing is unknown for now and asked again next time (not cached)."""
    from correlator.bulkhead import Bulkhead
    from correlator.config import load_settings
    from correlator.model import SourceReport, SourceStatus
    from correlator.standing_run import StandingLookup

    class Counting:
        def __init__(self) -> None:
            self.in_flight = self.asked = 0
            self.bulkhead: Bulkhead | None = None

        async def bucket_counts(self, *args: object) -> list[tuple[str, float]]:
            self.asked += 1
            assert self.bulkhead is not None and self.bulkhead.in_flight == 1  # asked inside its slot
            return [("0.1", 80.0), ("0.5", 95.0), ("+Inf", 100.0)]

    ex = exemplar(0.3)
    answered = Correlation("a" * 32, Window(T, T), None, (), (), (ex,), (Placement(None, Match.TRACE),), (), (),
                           {"prometheus": SourceReport(SourceStatus.OK, 20.0)})
    prometheus = Counting()
    lookup = StandingLookup(load_settings(environ={}))
    full = Bulkhead("prometheus", 1, 0, 0.0)
    full.in_flight = 1  # every slot taken by correlations, no queue
    lookup.bulkheads = {"prometheus": full}
    [refused] = await lookup.lookup(prometheus, answered, None)  # type: ignore[arg-type]
    assert not refused.known and "too many Prometheus queries in flight" in standing_body(refused)["message"]
    assert prometheus.asked == 0
    free = prometheus.bulkhead = Bulkhead("prometheus", 1, 0, 0.0)
    lookup.bulkheads = {"prometheus": free}
    [known] = await lookup.lookup(prometheus, answered, None)  # type: ignore[arg-type]
    assert known.known and prometheus.asked == 1 and free.in_flight == 0  # asked now: the refusal was not cached


async def test_correlations_of_one_series_and_second_share_one_query() -> None:
    """Under load the traces of one route ask about the same series within a second: Prometheus is asked once
    for them all (evaluated at the exemplar's time + 2.5 min, to the whole second), a later second again."""
    from correlator.config import load_settings
    from correlator.model import SourceReport, SourceStatus
    from correlator.standing_run import StandingLookup

    class Counting:
        def __init__(self) -> None:
            self.asked: list[int] = []

        async def bucket_counts(self, query: str, at_ns: int, tenant: str | None = None) -> list[tuple[str, float]]:
            self.asked.append(at_ns)
            await asyncio.sleep(0.01)
            return BUCKETS

    def correlation(trace: str, at_ns: int) -> Correlation:
        ex = Exemplar(f"ex-{trace}", SERIES["__name__"], SERIES, {}, 0.3, at_ns, trace, "b" * 16)
        return Correlation(trace, Window(at_ns, at_ns), None, (), (), (ex,), (Placement(None, Match.TRACE),), (), (),
                           {"prometheus": SourceReport(SourceStatus.OK, 20.0)})

    prometheus = Counting()
    lookup = StandingLookup(load_settings(environ={"CORRELATOR_CACHE_MAX_ENTRIES": "0"}))
    same_second = [correlation(f"{i:032x}", T + i * 100_000_000) for i in range(1, 5)]  # 100..400 ms after T
    found = await asyncio.gather(*(lookup.lookup(prometheus, c, None) for c in same_second))  # type: ignore[arg-type]
    assert [s.faster_share for [s] in found] == [pytest.approx((90 + 0.2 * 7) / 100)] * 4
    assert prometheus.asked == [T + 150 * 10**9]  # one query, at the whole second nearest T + 2.5 min
    [other] = await lookup.lookup(prometheus, correlation("f" * 32, T + 1_600_000_000), None)  # type: ignore[arg-type]
    assert other.known and prometheus.asked == [T + 150 * 10**9, T + 152 * 10**9]


async def test_a_shared_standing_query_outlives_the_short_budget_of_the_correlation_that_asked_first() -> None:
    from correlator.config import load_settings
    from correlator.model import SourceReport, SourceStatus
    from correlator.standing_run import StandingLookup

    class Slow:
        asked = 0

        async def bucket_counts(self, query: str, at_ns: int, tenant: str | None = None) -> list[tuple[str, float]]:
            self.asked += 1
            await asyncio.sleep(0.05)
            return BUCKETS

    ex = exemplar(0.3)
    answered = Correlation("a" * 32, Window(T, T), None, (), (), (ex,), (Placement(None, Match.TRACE),), (), (),
                           {"prometheus": SourceReport(SourceStatus.OK, 20.0)})
    prometheus, lookup = Slow(), StandingLookup(load_settings(environ={"CORRELATOR_CACHE_MAX_ENTRIES": "0"}))
    hurried = asyncio.ensure_future(lookup.lookup(prometheus, answered, None, budget=0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    [patient] = await lookup.lookup(prometheus, answered, None, budget=1.0)  # type: ignore[arg-type]
    [late] = await hurried
    assert "did not answer within 0.0s" in standing_body(late)["message"]  # its own deadline, its own words
    assert patient.known and prometheus.asked == 1  # the query went on for the other one


def _standing_as_it_was(ex: Exemplar, buckets: list[tuple[str, float]]) -> Standing:
    """`standing_of` before session 11 read the buckets once per shared answer (docs/performance-p3.md): the reference."""
    import math

    from correlator.standing import _bound, _new_standing, series_label, window_of
    try:
        cumulative = sorted((_bound(le), count) for le, count in buckets)
    except ValueError:
        return unknown(ex, "the histogram's `le` labels are not numbers")
    if not cumulative or cumulative[-1][0] != math.inf:
        return unknown(ex, "no histogram buckets for this series in the 5 minutes around it")
    total = cumulative[-1][1]
    if total <= 0:
        return unknown(ex, "the histogram counted no observations in the 5 minutes around it")
    lower, below = -math.inf, 0.0
    for upper, count in cumulative:
        if ex.value <= upper:
            inside = max(0.0, count - below)
            label = f"({'-Inf' if lower == -math.inf else f'{lower:g}'}, {'+Inf' if upper == math.inf else f'{upper:g}'}]"
            if upper == math.inf:
                rank, at_least = below, True
            else:
                start = 0.0 if lower == -math.inf else lower
                fraction = (ex.value - start) / (upper - start) if upper > start else 1.0
                rank, at_least = below + min(max(fraction, 0.0), 1.0) * inside, False
            return _new_standing(ex.id, True, series_label(ex.metric, ex.series), window_of(ex), label, min(1.0, rank / total),
                                 at_least, total, None)
        lower, below = upper, count
    return unknown(ex, "the value lies above every bucket")


def test_buckets_read_once_give_every_exemplar_the_standing_they_gave_read_each_time() -> None:
    """The standing lookup keeps each shared answer as `buckets_of` reads it; `standing_in` of that is `standing_of` as it
    was, for any order, duplicate or odd bounds, counts and values (2,000 generated cases)."""
    import random

    from correlator.standing import buckets_of, standing_in
    rng = random.Random(11)
    bounds = ["0.005", "0.01", "0.1", "0.25", "0.5", "1", "2.5", "10", "-1", "0", "1e3", "+Inf", "Inf", "inf", "NaN", "x", "1_0"]
    for _ in range(2000):
        buckets = [(rng.choice(bounds), rng.choice([0.0, 1.0, 5.0, rng.uniform(-5, 500)])) for _ in range(rng.randint(0, 9))]
        shared = buckets_of(buckets)
        for value in (rng.uniform(-1, 20), 0.0, 0.1, 1.0, 1e9, float("inf"), float("nan")):
            ex = exemplar(value)
            assert standing_in(ex, shared) == _standing_as_it_was(ex, buckets) == standing_of(ex, buckets), (buckets, value)
