"""Many correlations at once: bounded concurrency, one deadline, Loki once per service set,
one exemplar query, the cache read and filled, single-flight with /correlate both ways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

from correlator.config import load_settings
from correlator.correlate import Correlator
from correlator.ids import TraceId, parse_trace_id
from correlator.many import Wanted, correlate_many
from correlator.model import Exemplar, LogLine, SourceStatus, Span, Trace, Window
from correlator.sources import SourceResult
from tests.test_join import MS, T0, seed_trace
from tests.waiting import until

NOW = T0 / 1e9 + 3600  # an hour after the traces: settled, cacheable
IDS = [parse_trace_id(f"{n:032x}") for n in range(1, 7)]


def trace_for(trace_id: TraceId) -> Trace:
    base = seed_trace()
    spans = base.spans
    if int(trace_id.hex, 16) % 2 == 0:  # even traces: a fourth service, so two service sets
        spans = (*spans, Span("d" * 16, spans[0].span_id, "billing", "charge", T0 + 6 * MS, T0 + 9 * MS))
    return replace(base, trace_id=trace_id.hex, spans=spans)


class Jaeger:
    def __init__(self, delay: float = 0.05, stuck: Sequence[str] = (), lost: Sequence[str] = ()) -> None:
        self.delay, self.stuck, self.lost = delay, set(stuck), set(lost)
        self.calls: list[str] = []
        self.active = self.peak = self.finished = 0

    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None) -> SourceResult[Trace | None]:
        self.calls.append(trace_id.hex)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(3600 if trace_id.hex in self.stuck else self.delay)
        finally:
            self.active -= 1
            self.finished += 1
        if trace_id.hex in self.lost:
            return SourceResult(None, not_found=True)
        return SourceResult(trace_for(trace_id))


class Loki:
    def __init__(self, jaeger: Jaeger | None = None) -> None:
        self.single: list[str] = []
        self.many: list[tuple[tuple[str, ...], tuple[str, ...] | None]] = []
        self.jaeger = jaeger
        self.jaeger_done: list[int] = []  # trace fetches finished when each fetch_many came

    async def fetch(self, trace_id: TraceId, window: Window, services: Sequence[str] | None,
                    tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
        self.single.append(trace_id.hex)
        return SourceResult((LogLine(f"l-{trace_id.hex}", T0 + MS, f"hello {trace_id.hex}", "api-gateway"),))

    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window, services: Sequence[str] | None,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[LogLine, ...]]]:
        self.many.append((tuple(t.hex for t in trace_ids), tuple(services) if services else None))
        self.jaeger_done.append(self.jaeger.finished if self.jaeger else 0)
        return SourceResult({t.hex: (LogLine(f"l-{t.hex}", T0 + MS, f"hello {t.hex}", "api-gateway"),) for t in trace_ids})


class Prometheus:
    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, trace_id: TraceId, window: Window, tenant: str | None = None) -> SourceResult[tuple[Exemplar, ...]]:
        self.calls += 1
        return SourceResult(())

    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[Exemplar, ...]]]:
        self.calls += 1
        return SourceResult({t.hex: (Exemplar(f"e-{t.hex}", "m_bucket", {}, {}, 0.1, T0 + 145 * MS, t.hex),)
                             for t in trace_ids})


def make(jaeger: Jaeger, **env: str) -> tuple[Correlator, Loki, Prometheus]:
    loki, prom = Loki(jaeger), Prometheus()
    return Correlator(load_settings(environ=env), jaeger, loki, prom, wall_clock=lambda: NOW), loki, prom


def wanted(ids: Sequence[TraceId] = IDS) -> list[Wanted]:
    return [Wanted(t, Window(T0 + 145 * MS, T0 + 145 * MS)) for t in ids]


async def test_bounded_concurrency_one_loki_pair_per_service_set_one_exemplar_query() -> None:
    jaeger = Jaeger()
    correlator, loki, prom = make(jaeger)
    outcomes, failed = await correlate_many(correlator, wanted(), None, deadline=time.monotonic() + 5, concurrency=2)
    assert failed == {} and set(outcomes) == {t.hex for t in IDS}
    assert jaeger.peak == 2 and sorted(jaeger.calls) == sorted(t.hex for t in IDS)
    assert sorted(services or () for _ids, services in loki.many) == [
        ("api-gateway", "auth-service", "billing", "course-service"), ("api-gateway", "auth-service", "course-service")]
    assert loki.single == [] and prom.calls == 1 and loki.jaeger_done == [len(IDS)] * 2  # services known first
    for t in IDS:  # each trace got its own lines and exemplar, joined to its spans
        c = outcomes[t.hex].correlation
        assert [line.line for line in c.logs] == [f"hello {t.hex}"] and [e.trace_id for e in c.exemplars] == [t.hex]
        assert c.sources["loki"].items == 1 and c.findings and c.findings[0].kind == "bottleneck"


async def test_the_cache_is_filled_and_read_both_ways() -> None:
    jaeger = Jaeger()
    correlator, _loki, _prom = make(jaeger)
    await correlate_many(correlator, wanted(IDS[:3]), None, deadline=time.monotonic() + 5, concurrency=4)
    assert (await correlator.correlate(IDS[0])).cached
    single = await correlator.correlate(IDS[4])
    outcomes, _ = await correlate_many(correlator, wanted(IDS[:5]), None, deadline=time.monotonic() + 5, concurrency=4)
    assert not single.cached and outcomes[IDS[4].hex].cached and outcomes[IDS[0].hex].cached
    assert sorted(jaeger.calls) == sorted(t.hex for t in IDS[:5])  # each trace fetched once in all


async def test_an_investigation_whose_caller_left_still_fills_the_cache() -> None:
    jaeger = Jaeger(delay=0.2)
    correlator, _loki, _prom = make(jaeger)
    caller = asyncio.ensure_future(correlate_many(correlator, wanted(IDS[:2]), None, deadline=time.monotonic() + 5,
                                                  concurrency=4))
    await until(lambda: len(jaeger.calls) == 2)
    caller.cancel()  # the client went away mid-investigation; the batch goes on for whoever shares it
    await until(lambda: not correlator._batches)  # the batch has ended (and cached as it ended), however long it took
    assert (await correlator.correlate(IDS[0])).cached and (await correlator.correlate(IDS[1])).cached
    assert sorted(jaeger.calls) == sorted(t.hex for t in IDS[:2])  # nothing fetched twice


async def test_single_flight_with_a_concurrent_correlate_in_both_directions() -> None:
    jaeger = Jaeger(delay=0.2)
    correlator, _loki, _prom = make(jaeger)
    # /correlate first, then the investigation asks for the same trace while it is in flight …
    first = asyncio.ensure_future(correlator.correlate(IDS[0]))
    await asyncio.sleep(0.01)
    many = asyncio.ensure_future(correlate_many(correlator, wanted(IDS[:3]), None, deadline=time.monotonic() + 5,
                                                concurrency=4))
    await asyncio.sleep(0.01)
    # … and a /correlate arrives for a trace the investigation is fetching.
    late = await correlator.correlate(IDS[2])
    outcomes, failed = await many
    assert (await first).correlation.trace is not None and late.correlation.trace is not None and failed == {}
    assert outcomes[IDS[0].hex].correlation.trace_id == IDS[0].hex
    assert sorted(jaeger.calls) == sorted(t.hex for t in IDS[:3])  # no trace fetched twice


async def test_one_deadline_a_stuck_trace_times_out_alone_and_a_lost_one_is_reported() -> None:
    jaeger = Jaeger(stuck=[IDS[1].hex], lost=[IDS[2].hex])
    correlator, _loki, _prom = make(jaeger, CORRELATOR_DEADLINE_SECONDS="0.5")
    started = time.monotonic()
    outcomes, failed = await correlate_many(correlator, wanted(IDS[:4]), None, deadline=started + 0.5, concurrency=4)
    assert time.monotonic() - started < 1.5 and failed == {}
    assert outcomes[IDS[1].hex].correlation.sources["jaeger"].status is SourceStatus.TIMEOUT
    assert outcomes[IDS[2].hex].correlation.sources["jaeger"].status is SourceStatus.NOT_FOUND
    assert outcomes[IDS[2].hex].correlation.trace is None
    assert outcomes[IDS[0].hex].correlation.trace is not None and outcomes[IDS[3].hex].correlation.trace is not None
    assert not correlator._inflight  # nothing left registered as in flight


async def test_with_the_static_selector_loki_runs_beside_jaeger_once_for_all() -> None:
    jaeger = Jaeger(delay=0.1)
    correlator, loki, prom = make(jaeger, CORRELATOR_LOKI_SELECTOR_STRATEGY="static")
    outcomes, _ = await correlate_many(correlator, wanted(), None, deadline=time.monotonic() + 5, concurrency=10)
    assert [(sorted(ids), services) for ids, services in loki.many] == [(sorted(t.hex for t in IDS), None)]
    assert loki.jaeger_done == [0]  # asked before any trace had arrived
    assert all(len(outcomes[t.hex].correlation.logs) == 1 for t in IDS) and prom.calls == 1


async def test_lines_without_a_trace_id_are_looked_up_per_trace_as_correlate_does() -> None:
    class UntracedLoki(Loki):
        def __init__(self) -> None:
            super().__init__()
            self.untraced_calls = 0

        async def fetch_untraced(self, window: Window, services: Sequence[str], limit: int,
                                 tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
            self.untraced_calls += 1
            return SourceResult((LogLine(f"u-{window.start_ns}", window.start_ns + 30 * MS, "pool exhausted", "course-service"),))

    loki = UntracedLoki()
    settings = load_settings(environ={"CORRELATOR_JOIN_UNTRACED_OVERLAP_CHECK": "false"})
    correlator = Correlator(settings, Jaeger(), loki, Prometheus(), wall_clock=lambda: NOW)  # type: ignore[arg-type]
    outcomes, _ = await correlate_many(correlator, wanted(IDS[:3]), None, deadline=time.monotonic() + 5, concurrency=4)
    single = await Correlator(settings, Jaeger(), UntracedLoki(), Prometheus(), wall_clock=lambda: NOW).correlate(  # type: ignore[arg-type]
        IDS[0], Window(T0 + 145 * MS, T0 + 145 * MS))
    assert loki.untraced_calls == 3
    assert outcomes[IDS[0].hex].correlation.untraced == single.correlation.untraced
    assert [ln.line for ln in outcomes[IDS[0].hex].correlation.inferred_logs] == \
        [ln.line for ln in single.correlation.inferred_logs]


async def test_an_investigation_counts_against_the_bulkheads_and_a_full_one_refuses_only_its_source() -> None:
    """/investigate's queries take the same per-backend slots as /correlate's: with the Jaeger cap at 2, no more
    than 2 trace fetches run at once even with a wider gate; with Loki's slots all taken by others, Loki is not
    asked and its part says why, while the traces and exemplars still come."""
    jaeger = Jaeger()
    correlator, _loki, _prom = make(jaeger, CORRELATOR_JAEGER_MAX_IN_FLIGHT="2", CORRELATOR_JAEGER_MAX_QUEUED="64",
                                  CORRELATOR_SERVER_ADMISSION_WAIT_SECONDS="5", CORRELATOR_JOIN_UNTRACED="false")
    _outcomes, failed = await correlate_many(correlator, wanted(), None, deadline=time.monotonic() + 10, concurrency=6)
    assert failed == {} and jaeger.peak == 2 and correlator.bulkheads["jaeger"].in_flight == 0

    jaeger = Jaeger()
    correlator, loki, _prom = make(jaeger, CORRELATOR_JOIN_UNTRACED="false", CORRELATOR_LOKI_MAX_QUEUED="0")
    taken = correlator.bulkheads["loki"]
    taken.in_flight = taken.limit  # every slot held by other correlations
    outcomes, failed = await correlate_many(correlator, wanted(), None, deadline=time.monotonic() + 5, concurrency=2)
    assert failed == {} and loki.many == []  # Loki was not asked
    c = outcomes[IDS[0].hex].correlation
    assert c.sources["loki"].status is SourceStatus.UNAVAILABLE and "too many loki queries in flight" in (c.sources["loki"].error or "")
    assert c.trace is not None and c.exemplars  # the rest of the answer is there
