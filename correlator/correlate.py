"""Orchestration: plan the window, ask the three backends, join, analyse, cache.

Latency floor: the slowest backend call. Without a time hint the trace must come first (it
tells Loki which services and Prometheus which minutes to search), so a cold correlation
costs jaeger + max(loki, prometheus); with a hint (`start`/`end`, which Grafana links can
carry) all three run at once. Each source runs inside its own deadline and every failure
becomes a status in `sources`: nothing a backend does can turn into a crash or a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from operator import is_
from typing import Any, Protocol, TypeVar, cast

from opentelemetry.trace import INVALID_SPAN

from correlator.analysis import analyse
from correlator.bulkhead import Bulkhead, Overloaded, admitted
from correlator.cache import TTLCache
from correlator.config import Settings
from correlator.construct import fast_constructor
from correlator.errors import InvalidTraceId, ShuttingDown, SourceError
from correlator.gcpause import without_gc
from correlator.ids import TraceId, parse_trace_id
from correlator.join import join, lines_by_span
from correlator.logfields import extract_trace_context
from correlator.model import (
    Correlation,
    Exemplar,
    LogLine,
    Match,
    Placement,
    SourceReport,
    SourceStatus,
    Span,
    Trace,
    UntracedReport,
    Window,
)
from correlator.offload import Offloader, Outline, Prerendered, RawTrace, WorkerFailed
from correlator.single_flight import cancelling_itself
from correlator.skew import ClockEstimate, estimate_clocks, skew_findings
from correlator.sources import SourceResult
from correlator.sources._resilience import deadline as retry_deadline
from correlator.sources.jaeger import JaegerSource, others_search_window
from correlator.spantree import SpanTree, build_tree
from correlator.telemetry import tracer
from correlator.untraced import attach_untraced, untraced_window
from correlator.untraced_share import LinesAnswer, SearchAnswer, SharedLookups, clusters

__all__ = ["SOURCES", "Correlator", "Outcome"]

log = logging.getLogger(__name__)

SOURCES = ("jaeger", "loki", "prometheus")
# Jaeger's storage lookup only needs a bound, not a tight one: a trace may start well before
# the instant an exemplar or log line was stamped.
_JAEGER_HINT_MARGIN_NS = 15 * 60 * 1_000_000_000

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
# Backend queries per source in each phase (a Loki lookup is two queries: line filter + metadata).
_ALL_AT_ONCE = {"jaeger": 1, "loki": 2, "prometheus": 1}
_TRACE_FIRST = {"jaeger": 1}
_THEN_THE_REST = {"loki": 2, "prometheus": 1}
_OTHER_TRACES_DEPTH = 50  # per service: more traces than this around one request → "unknown", not "none"
# A hint at most this wide starts the untraced-lines query at once (any service, the hint's window);
# wider ones would scan too much of Loki for an answer the trace may not fit in.
_EARLY_UNTRACED_MAX_NS = 60 * 1_000_000_000
_EARLY_UNTRACED_PAD_NS = 2_000_000_000
# The least extra wait for a hinted correlation's untraced lookups once the main lookups are done: what they
# cost at most when not foreseen late (a safety net), and what keeps fast backends' answers from racing.
_MIN_WAIT_S = 0.01
_FORESEEN_SLACK_MS = 2.0  # searches foreseen to end later than the main lookups' time × (1 + ratio) + this: not asked


@dataclass(frozen=True, slots=True)
class _Untraced:
    lines: tuple[LogLine, ...]
    other_traces: dict[str, list[tuple[int, int]] | None]
    report: UntracedReport
    clock: ScopeClock | None = None  # the scope's clock estimate: `_assemble` reuses it when its tree asks the same
@dataclass(slots=True)
class _UntracedPlan:
    """What `_untraced` has yet to wait for (`_untraced_begin` → `_untraced_wait`)."""

    services: list[str]
    window: Window
    clock: ScopeClock | None
    check: bool  # the other traces are to be asked
    skip: bool  # ... and were not, foreseen late
    budget: float
    searched: Window
    lines_now: SourceResult[tuple[LogLine, ...]] | None = None  # the shared lines answer, already there
    others_now: list[tuple[bool, list[tuple[int, int]] | None]] | None = None  # the shared searches' cut-outs, if taken


LOWER64_NOTE = ("only the lower 64 bits of the trace ID are known (a Datadog decimal ID): Jaeger finds the trace "
                "only if it is a 64-bit trace, and log lines were matched on those 64 bits")


class TraceSource(Protocol):
    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None) -> SourceResult[Trace | None]: ...


class LogSource(Protocol):
    async def fetch(
        self, trace_id: TraceId, window: Window, services: Sequence[str] | None, tenant: str | None = None
    ) -> SourceResult[tuple[LogLine, ...]]: ...


class ExemplarSource(Protocol):
    async def fetch(self, trace_id: TraceId, window: Window, tenant: str | None = None) -> SourceResult[tuple[Exemplar, ...]]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    correlation: Correlation
    tree: SpanTree | None
    cached: bool = False
    # A big trace's answer, rendered in the worker process (offload.py); then `correlation` has
    # everything but the trace (findings, placements, logs, exemplars, sources) and `tree` is None.
    prerendered: Prerendered | None = None
    then: Any = None  # a big trace's `then` result, made in the worker (many.Wanted.then: investigate's digest)

    @property
    def found(self) -> bool:
        if self.prerendered is not None:
            return self.prerendered.found
        c = self.correlation
        return c.trace is not None or bool(c.logs) or bool(c.exemplars)

    @property
    def all_answered(self) -> bool:
        return all(r.status in (SourceStatus.OK, SourceStatus.NOT_FOUND) for r in self.correlation.sources.values())

    @property
    def http_status(self) -> int:
        """404 only when every source answered and none knows the ID; else 200 (maybe partial)."""
        return 404 if self.all_answered and not self.found else 200


class Correlator:
    def __init__(
        self,
        settings: Settings,
        jaeger: TraceSource,
        loki: LogSource,
        prometheus: ExemplarSource,
        wall_clock: Callable[[], float] = time.time,
        offload: Offloader | None = None,
    ) -> None:
        self.settings = settings
        self.jaeger, self.loki, self.prometheus = jaeger, loki, prometheus
        self._wall = wall_clock
        self._cache: TTLCache[Outcome] = TTLCache(settings.cache.max_entries, settings.cache.ttl_seconds)
        self._big_cache: TTLCache[Outcome] = TTLCache(min(settings.cache.max_entries, settings.cache.max_big_entries),
                                                      settings.cache.ttl_seconds)
        self._inflight: dict[tuple[str | None, str], asyncio.Future[Outcome]] = {}
        self._closed = False  # `aclose` called
        self._batches: set[asyncio.Future[Any]] = set()  # many.py's investigations running: `aclose` ends them too
        # One bulkhead per backend (this worker's share): see correlator/bulkhead.py.
        self.bulkheads = {
            name: Bulkhead(name, src.max_in_flight, src.max_queued, settings.server.admission_wait_seconds,
                           settings.server.retry_after_seconds)
            for name in SOURCES for src in [getattr(settings, name)]
        }
        self.backend_calls = 0  # for tests and benchmarks: a cache hit adds none
        self.offload = offload  # big traces to a worker process (None: everything on the event loop)
        # Untraced lines and other traces, shared between correlations for a few seconds (untraced_share.py).
        self.shared = SharedLookups(settings.join.untraced_share_seconds)
        self.latency_ms: dict[str, float] = {}  # per source, a moving average of its answered calls
        # Where a big trace stands (standing_run.StandingLookup.lookup_parts, bound to Prometheus by the API):
        # looked up before the worker renders, since its answer is final. Inline answers get theirs in the API.
        self.standings: Callable[..., Awaitable[Any]] | None = None
        self.keep_models = False  # the worker keeps big traces' models for `Offloader.describe` (MCP's correlator)

    async def correlate(self, trace_id: TraceId, hint: Window | None = None, tenant: str | None = None) -> Outcome:
        key = (tenant, trace_id.hex + ("/low64" if trace_id.lower64_only else ""))
        cached = self._cache.get(key) or self._big_cache.get(key)
        if cached is not None:
            return replace(cached, cached=True)
        # Identical concurrent requests (a dashboard refresh, a retry storm) share one fetch.
        shared = self._inflight.get(key)
        if shared is None or (shared.done() and (shared.cancelled() or shared.exception() is not None)):
            # (Ended badly, its entry not forgotten yet — a loop turn later: a failure this caller never shared.)
            if self._closed:  # no new work for clients about to close, nor a CancelledError nobody asked for
                raise ShuttingDown("the correlator is shutting down")
            # A flood is refused here, before any task is made for it: refusals are most of the CPU then.
            for name, weight in (_ALL_AT_ONCE if hint is not None else _TRACE_FIRST).items():
                if self.bulkheads[name].refuses(weight):
                    raise self.bulkheads[name].refuse()
            shared = asyncio.get_running_loop().create_task(self._correlate_and_keep(key, trace_id, hint, tenant))
            self._inflight[key] = shared
            # Forgets this one only: one ended badly may have been replaced (above) before its callback runs.
            shared.add_done_callback(lambda f: self._inflight.get(key) is f and self._inflight.pop(key, None))
        try:
            outcome = await asyncio.shield(shared)
        except asyncio.CancelledError:
            if shared.cancelled() and self._closed and not cancelling_itself():  # `aclose` ended it, not this caller's canceller
                del shared
                raise ShuttingDown("the correlator is shutting down") from None
            del shared
            raise
        except BaseException:
            # The task holds the exception, whose traceback holds this frame, which holds the task: a cycle
            # only the cyclic collector frees. Under a flood of refusals that is ~60 objects a request, and
            # the young collections walking them stalled every request on the worker (bench flood).
            del shared
            raise
        return outcome

    async def _correlate_and_keep(self, key: tuple[str | None, str], trace_id: TraceId, hint: Window | None,
                                  tenant: str | None) -> Outcome:
        outcome = await self._correlate(trace_id, hint, tenant)
        # Cached here, before the task ends (not by its waiters, a turn after the in-flight entry is forgotten): a
        # request coming in between found neither and correlated the trace again (tests/test_loop_turn_races.py).
        self._keep(key, outcome)
        return outcome

    def _keep(self, key: tuple[str | None, str], outcome: Outcome) -> None:
        """Cache `outcome` under `key` when it may be (every source answered, the trace settled)."""
        cache = self._big_cache if _big(outcome) else self._cache
        if cache.enabled and self._cacheable(outcome):  # a cache of size 0 keeps nothing: no need to ask
            cache.put(key, outcome)

    async def aclose(self) -> None:
        """End what outlives a request: correlations and investigations whose callers left (shielded) and the shared lookups. The
        service calls it before closing its backend clients, so no task of it talks to a closed client or outlives it."""
        self._closed = True  # from now on a correlation is refused (ShuttingDown), not started
        running = [task for task in self._inflight.values() if not task.done()]
        running += self._batches  # their entries above are plain futures: cancelling those leaves the work running
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.shared.aclose()

    async def correlate_lower64(self, trace_id: TraceId, hint: Window | None = None, tenant: str | None = None) -> Outcome:
        """An ID known only by its lower 64 bits (Datadog): correlate on them; when Jaeger has no 64-bit trace
        by them but the lines found carry exactly one whole ID ending in them, correlate that one, and say so."""
        first = await self.correlate(trace_id, hint, tenant)
        big = first.prerendered
        has_trace = first.correlation.trace is not None or (big is not None and big.trace_end_ns is not None)
        if not trace_id.lower64_only or has_trace:
            return first
        whole: dict[str, int] = {}
        for line in first.correlation.logs:
            for candidate in _whole_ids(line, self.settings):
                if candidate[16:] == trace_id.hex[16:] and not candidate.startswith("0" * 16):
                    whole[candidate] = whole.get(candidate, 0) + 1
        if len(whole) != 1:
            return first
        ((full, count),) = whole.items()
        second = await self.correlate(parse_trace_id(full), hint, tenant)
        note = (f"only the lower 64 bits of the trace ID were given (a Datadog decimal ID); the whole ID {full} was "
                f"read from {count} log line(s) that carry it and end in those bits")
        return replace(second, correlation=replace(second.correlation, notes=(*second.correlation.notes, note)))

    # ------------------------------------------------------------------ internals

    async def _correlate(self, trace_id: TraceId, hint: Window | None, tenant: str | None) -> Outcome:
        s = self.settings
        started = time.monotonic()
        deadline = started + s.deadline_seconds
        # The caller's tenant always scopes Loki; Jaeger and Prometheus only when configured.
        jaeger_tenant = tenant if s.jaeger.forward_tenant else None
        prom_tenant = tenant if s.prometheus.forward_tenant else None
        if hint is not None:
            jaeger_window = hint.widened(_JAEGER_HINT_MARGIN_NS)
            # Services are unknown until the trace arrives: search the static selector instead
            # of waiting for Jaeger, so the cost is max() of the three, not a sum.
            async def jaeger_then_untraced(main_done: asyncio.Event, jaeger_done: asyncio.Future[None],
                                           ) -> tuple[tuple[SourceReport, SourceResult[Any] | None], Outline | None, _Untraced]:
                # Untraced lines need the trace's services and window: they follow Jaeger, beside Loki, and
                # may make the answer wait only a little longer than the three main lookups.
                try:
                    found = await self._run("jaeger", self._fetch_trace(trace_id, jaeger_window, jaeger_tenant), s.jaeger,
                                            deadline)
                    found, outline = await self._outline(found) if self.offload is not None else (found, None)
                finally:
                    jaeger_done.set_result(None)
                untraced = await self._untraced(trace_id, found, tenant, jaeger_tenant, deadline, outline,
                                                stop=(main_done, started))
                return found, outline, untraced

            async with admitted(self.bulkheads, _ALL_AT_ONCE):
                self.untraced_early([hint], tenant, deadline)
                loki_task = asyncio.ensure_future(self._run("loki", self.loki.fetch(trace_id, hint, None, tenant), s.loki,
                                                            deadline))
                prom_task = asyncio.ensure_future(
                    self._run("prometheus", self.prometheus.fetch(trace_id, hint, prom_tenant), s.prometheus, deadline))
                jaeger_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                main_done = _all_done((jaeger_done, loki_task, prom_task))
                (jaeger_res, outline, untraced), loki_res, prom_res = await asyncio.gather(
                    jaeger_then_untraced(main_done, jaeger_done), loki_task, prom_task)
            window = hint
        else:
            now_ns = int(self._wall() * 1e9)
            lookback = Window(now_ns - int(s.jaeger.lookback_seconds * 1e9), now_ns + 60_000_000_000)
            async with admitted(self.bulkheads, _TRACE_FIRST):
                jaeger_res = await self._run("jaeger", self._fetch_trace(trace_id, lookback, jaeger_tenant), s.jaeger, deadline)
            jaeger_res, outline = await self._outline(jaeger_res) if self.offload is not None else (jaeger_res, None)
            trace = jaeger_res[1].value if jaeger_res[1] is not None else None
            services: Sequence[str] | None
            known: tuple[list[str], Window] | None = None  # the trace's services and span, for the untraced scope
            if outline is not None:
                window = Window(outline.start_ns, outline.end_ns)
                services = list(outline.services)
            elif isinstance(trace, Trace) and trace.spans:
                window = Window(trace.start_ns, trace.end_ns)
                services = sorted({span.service for span in trace.spans})
                known = (services, window)
            else:
                # No trace to narrow the search: look for orphan logs/exemplars in the recent past.
                window = Window(now_ns - int(s.orphan_lookback_seconds * 1e9), now_ns)
                services = None
            async with admitted(self.bulkheads, _THEN_THE_REST):
                # The untraced lookup's part that needs no waiting first: under load (bench P3) that is all of it.
                begun = self._untraced_begin(trace_id, jaeger_res, tenant, jaeger_tenant, deadline, outline, None, known)
                loop = asyncio.get_running_loop()
                loki_task = loop.create_task(
                    self._run("loki", self.loki.fetch(trace_id, window, services, tenant), s.loki, deadline))
                prom = self._run("prometheus", self.prometheus.fetch(trace_id, window, prom_tenant), s.prometheus, deadline)
                if isinstance(begun, _Untraced):
                    # Nothing left to wait for but the two lookups: Prometheus in this task, Loki in its own (a task fewer).
                    untraced, retries_until = begun, retry_deadline.get()
                    try:
                        prom_res = await prom
                        retry_deadline.set(retries_until)  # `_run` set Prometheus's: this task's own again (`_finish`)
                        loki_res = await loki_task
                    except BaseException:
                        loki_task.cancel()
                        raise
                else:
                    # Loki and Prometheus in tasks, the untraced lookup in this one (bench P3: a task and a gather fewer).
                    prom_task = loop.create_task(prom)
                    try:
                        untraced = await self._untraced_wait(trace_id, begun, tenant, jaeger_tenant, None)
                        loki_res, prom_res = await loki_task, await prom_task
                    except BaseException:
                        loki_task.cancel()
                        prom_task.cancel()
                        raise
        return await self._finish(trace_id, window, jaeger_res, loki_res, prom_res, untraced, outline, tenant, deadline)

    def _fetch_trace(self, trace_id: TraceId, window: Window | None, tenant: str | None) -> Awaitable[SourceResult[Any]]:
        if self.offload is None or not isinstance(self.jaeger, JaegerSource):
            return self.jaeger.fetch(trace_id, window, tenant)
        return self.jaeger.fetch(trace_id, window, tenant, raw_above=self.offload.threshold)  # big ones: RawTrace

    async def _outline(self, jaeger_res: tuple[SourceReport, SourceResult[Any] | None],
                       ) -> tuple[tuple[SourceReport, SourceResult[Any] | None], Outline | None]:
        """A big trace's services and span, from the worker (which keeps the parsed trace for the
        assembly); a trace without spans becomes not_found. Anything else passes through."""
        report, result = jaeger_res
        raw = result.value if result is not None else None
        if not isinstance(raw, RawTrace) or self.offload is None:
            return jaeger_res, None
        try:
            async with asyncio.timeout(self.settings.deadline_seconds):
                outline = await self.offload.outline(raw, self.settings)
        except (WorkerFailed, TimeoutError) as exc:
            return _failed(report, exc, self.settings.deadline_seconds), None
        if outline is None:
            return (replace(report, status=SourceStatus.NOT_FOUND, items=0), None), None
        # The worker keeps the parsed trace under the outline's token: the body (32 MB at 100k spans) and its file can go now.
        return (report, SourceResult(replace(raw, body=b"", path=None))), outline

    def _scope(self, jaeger_res: tuple[SourceReport, SourceResult[Any] | None], outline: Outline | None,
               known: tuple[list[str], Window] | None = None) -> tuple[list[str], Window, ScopeClock | None] | None:
        """Where the trace's untraced lines are looked for: its services, and its window widened (untraced.py);
        and the clock estimate that widened it (None from a worker's outline). `known`: see `_scope_of`."""
        if outline is not None:
            return list(outline.services), outline.untraced_window, None
        trace = jaeger_res[1].value if jaeger_res[1] is not None else None
        if not isinstance(trace, Trace) or not trace.spans:
            return None
        clock = scope_clock(trace)
        return *_scope_of(trace, self.settings.join.clock_skew_ms, clock[2], known), clock

    async def _finish(
        self, trace_id: TraceId, window: Window, jaeger_res: tuple[SourceReport, SourceResult[Any] | None],
        loki_res: tuple[SourceReport, SourceResult[tuple[LogLine, ...]] | None],
        prom_res: tuple[SourceReport, SourceResult[tuple[Exemplar, ...]] | None], untraced: _Untraced,
        outline: Outline | None, tenant: str | None = None, deadline: float | None = None, then: Any = None,
    ) -> Outcome:
        raw = jaeger_res[1].value if jaeger_res[1] is not None else None
        if isinstance(raw, RawTrace) and self.offload is not None:
            reports = {"jaeger": jaeger_res[0], "loki": loki_res[0], "prometheus": prom_res[0]}
            logs = loki_res[1].value if loki_res[1] is not None else ()
            exemplars = prom_res[1].value if prom_res[1] is not None else ()
            standings = None
            if self.standings is not None:
                left = (deadline if deadline is not None else time.monotonic() + self.settings.deadline_seconds) - time.monotonic()
                standings = await self.standings(trace_id.hex, prom_res[0], exemplars, outline.root if outline else None,
                                                 tenant, left)
            try:
                # Bounded like a backend: a worker that never answers must not hang the request.
                async with asyncio.timeout(self.settings.deadline_seconds):
                    light, prerendered, extra = await self.offload.assemble(
                        self.settings, trace_id, window, raw, outline.token if outline else None, reports, logs, exemplars,
                        untraced, standings, self.keep_models, then)
                return Outcome(light, None, prerendered=prerendered, then=extra)
            except (WorkerFailed, TimeoutError) as exc:
                jaeger_res = _failed(jaeger_res[0], exc, self.settings.deadline_seconds)
        # (The cast's type as text: written as an expression it was built at every call, ~1 % of the orchestration.)
        return self._assemble(trace_id, window, cast("tuple[SourceReport, SourceResult[Trace | None] | None]", jaeger_res),
                              loki_res, prom_res, untraced)

    async def _untraced(self, trace_id: TraceId, jaeger_res: tuple[SourceReport, SourceResult[Any] | None],
                        tenant: str | None, jaeger_tenant: str | None, deadline: float,
                        outline: Outline | None = None, stop: tuple[asyncio.Event, float] | None = None) -> _Untraced:
        """Lines of the trace's services in its window with no trace ID, and other traces of those services.

        `stop` = (the main lookups are done, when the correlation started): then wait for these at most
        `join.untraced_wait_ratio` of that time longer; what is not there by then is reported late.
        Never raises: a failure is a status in `summary.untraced`, the correlation goes on without them.
        """
        begun = self._untraced_begin(trace_id, jaeger_res, tenant, jaeger_tenant, deadline, outline, stop)
        if isinstance(begun, _Untraced):
            return begun
        return await self._untraced_wait(trace_id, begun, tenant, jaeger_tenant, stop)

    def _untraced_begin(self, trace_id: TraceId, jaeger_res: tuple[SourceReport, SourceResult[Any] | None],
                        tenant: str | None, jaeger_tenant: str | None, deadline: float, outline: Outline | None,
                        stop: tuple[asyncio.Event, float] | None,
                        known: tuple[list[str], Window] | None = None) -> _Untraced | _UntracedPlan:
        """`_untraced`'s part that needs no waiting: its answer when nothing is to be waited for (off, no scope, no
        time, or — without `stop` — every answer already in the shared lookups: bench P3), else what is left to wait for."""
        s = self.settings.join
        if not s.untraced or getattr(self.loki, "fetch_untraced", None) is None:  # before the scope: it walks every span
            return _Untraced((), {}, UntracedReport("off"))
        scope = self._scope(jaeger_res, outline, known)  # a big trace's from the worker's outline
        if scope is None:
            return _Untraced((), {}, UntracedReport("off"))
        services, window, clock = scope
        check = (s.untraced_overlap_check and getattr(self.jaeger, "other_traces", None) is not None
                 and 0 < len(services) <= s.untraced_overlap_max_services)
        budget = deadline - time.monotonic()
        if budget <= 0:
            return _Untraced((), {}, UntracedReport("timeout", error="no time left in the deadline"))
        # With a hint, ask Jaeger for the other traces only when the answer can wait for them (cheap): the
        # searches answer about as fast as the trace did, unless they are shared ones already there.
        searched = others_search_window(window)
        skip = (check and stop is not None and self._searches_late(stop[1], s.untraced_wait_ratio)
                and not all(self.shared.has_search(name, searched, jaeger_tenant) for name in services))
        check = check and not skip
        if stop is not None:
            return _UntracedPlan(services, window, clock, check, skip, budget, searched)
        now = self._lines_now(services, window, tenant)  # a shared answer already there: no task, no timeout
        if now is None:
            return _UntracedPlan(services, window, clock, check, skip, budget, searched)
        if not check:
            overlap = "off" if not s.untraced_overlap_check else "unavailable"
            return _new_untraced(now.value, {}, _untraced_report("ok", len(now.value), now.truncated, overlap, None), clock)
        others = None
        if self._shares(self.jaeger, "service_traces"):
            # Every search answered already (shared): each is a cut-out, no task per service (bench P3).
            others = [self.shared.other_traces_now(name, searched, trace_id.hex, _OTHER_TRACES_DEPTH, jaeger_tenant)
                      for name in services]
            if all(usable for usable, _spans in others):
                by_service = dict(zip(services, [spans for _usable, spans in others], strict=True))
                overlap = "jaeger" if all(v is not None for v in by_service.values()) else "unavailable"
                return _new_untraced(now.value, by_service, _untraced_report("ok", len(now.value), now.truncated, overlap, None),
                                     clock)
        return _UntracedPlan(services, window, clock, check, skip, budget, searched, now, others)

    async def _untraced_wait(self, trace_id: TraceId, plan: _UntracedPlan, tenant: str | None, jaeger_tenant: str | None,
                             stop: tuple[asyncio.Event, float] | None) -> _Untraced:
        """`_untraced`'s part that waits: for the lookups `plan` found not answered yet."""
        s = self.settings.join
        services, window, clock, check, skip, budget, searched = (plan.services, plan.window, plan.clock, plan.check,
                                                                  plan.skip, plan.budget, plan.searched)

        async def others() -> list[list[tuple[int, int]] | None]:
            now = plan.others_now  # (taken in `_untraced_begin` already: no turn of the loop since)
            if now is None and self._shares(self.jaeger, "service_traces"):
                # Every search answered already (shared): each is a cut-out, no task per service (bench P3).
                now = [self.shared.other_traces_now(name, searched, trace_id.hex, _OTHER_TRACES_DEPTH, jaeger_tenant)
                       for name in services]
            if now is not None and all(usable for usable, _spans in now):
                return [spans for _usable, spans in now]
            if all(self.shared.has_search(name, searched, jaeger_tenant) for name in services):
                return [await self._other_traces(name, window, trace_id.hex, jaeger_tenant, budget) for name in services]
            return await asyncio.gather(*(self._other_traces(name, window, trace_id.hex, jaeger_tenant, budget)
                                          for name in services))
        lines_task: asyncio.Future[SourceResult[tuple[LogLine, ...]]]
        others_task: asyncio.Future[list[list[tuple[int, int]] | None]] | None
        if stop is None:
            # Nothing to give up on: wait for both, the searches in this task beside the lines' (bench P3: no
            # `_settle`, one task instead of two, none without the overlap check).
            now = plan.lines_now
            lines_task, others_task = await _both(
                _ready(now) if now is not None else self._untraced_lines(services, window, tenant, budget),
                others() if check else None)
            late: set[asyncio.Future[Any]] = set()
        else:
            lines_task = asyncio.ensure_future(self._untraced_lines(services, window, tenant, budget))
            others_task = asyncio.ensure_future(others()) if check else None
            late = await _settle([t for t in (lines_task, others_task) if t is not None], stop, s.untraced_wait_ratio)
        if lines_task in late:
            return _Untraced((), {}, UntracedReport("late", error="the lines were not there when the main lookups were"))
        by_service: dict[str, list[tuple[int, int]] | None]
        try:
            found = lines_task.result()
        except Overloaded as exc:
            return _Untraced((), {}, UntracedReport("error", error=str(exc)))
        except TimeoutError:
            return _Untraced((), {}, UntracedReport("timeout", error=f"no answer within {budget:.2f}s"))
        except SourceError as exc:
            return _Untraced((), {}, UntracedReport("error", error=str(exc)))
        if skip:
            by_service, overlap = dict.fromkeys(services), "late"
        elif others_task is None:
            by_service = {}
            overlap = "off" if not s.untraced_overlap_check else "unavailable"
        elif others_task in late:
            by_service, overlap = dict.fromkeys(services), "late"
        else:
            try:
                by_service = dict(zip(services, others_task.result(), strict=True))
            except Exception:  # a search answer nothing expected: those traces stay unknown
                log.exception("the other-traces search failed unexpectedly")
                by_service = dict.fromkeys(services)
            overlap = "jaeger" if all(v is not None for v in by_service.values()) else "unavailable"
        report = UntracedReport("ok", len(found.value), found.truncated, overlap)
        return _Untraced(found.value, by_service, report, clock)

    def _lines_now(self, services: Sequence[str], window: Window,
                   tenant: str | None) -> SourceResult[tuple[LogLine, ...]] | None:
        """The untraced lines when a finished shared query already holds them (untraced_share.py), else None."""
        if not self._shares(self.loki, "untraced_answer"):
            return None
        return self.shared.lines_now(services, window, self.settings.join.untraced_max_lines, tenant)

    async def _untraced_lines(self, services: Sequence[str], window: Window, tenant: str | None,
                              budget: float) -> SourceResult[tuple[LogLine, ...]]:
        limit = self.settings.join.untraced_max_lines
        async with asyncio.timeout(budget):
            if not self._shares(self.loki, "untraced_answer"):
                self.backend_calls += 1
                # Its queries count against the bulkheads too; a full one only costs these lines.
                async with admitted(self.bulkheads, {"loki": 1}):
                    return cast(SourceResult[tuple[LogLine, ...]],
                                await self.loki.fetch_untraced(window, services, limit, tenant))  # type: ignore[attr-defined]
            return await self.shared.lines(self._lines_query(tenant, budget), services, window, limit, tenant)

    async def _other_traces(self, service: str, window: Window, exclude_hex: str, tenant: str | None,
                            budget: float) -> list[tuple[int, int]] | None:
        """The spans of `service` in other traces around `window`; None when unknown (whatever went wrong)."""
        if self._shares(self.jaeger, "service_traces"):  # a finished shared search gives it: no timeout to set
            usable, spans = self.shared.other_traces_now(service, others_search_window(window), exclude_hex,
                                                         _OTHER_TRACES_DEPTH, tenant)
            if usable:
                return spans
        try:
            async with asyncio.timeout(budget):
                if not self._shares(self.jaeger, "service_traces"):
                    self.backend_calls += 1
                    async with admitted(self.bulkheads, {"jaeger": 1}):
                        return cast(list[tuple[int, int]] | None, await self.jaeger.other_traces(  # type: ignore[attr-defined]
                            service, window, exclude_hex, _OTHER_TRACES_DEPTH, tenant))
                return await self.shared.other_traces(self._search_query(tenant, budget), service,
                                                      others_search_window(window), exclude_hex, _OTHER_TRACES_DEPTH, tenant)
        except (Overloaded, TimeoutError, SourceError):
            return None

    def _searches_late(self, started: float, ratio: float) -> bool:
        """Whether searches started now would end after the main lookups (as they usually take) and the wait."""
        jaeger, loki, prometheus = (self.latency_ms.get(name) for name in SOURCES)
        if jaeger is None or loki is None or prometheus is None:
            return False
        now = (time.monotonic() - started) * 1000
        main = max(now, loki, prometheus)
        return now + jaeger > main * (1 + ratio) + _FORESEEN_SLACK_MS

    def _shares(self, source: object, method: str) -> bool:
        return self.settings.join.untraced_share_seconds > 0 and getattr(source, method, None) is not None

    def _lines_query(self, tenant: str | None, budget: float) -> Callable[[Window, frozenset[str] | None, int],
                                                                           Awaitable[LinesAnswer]]:
        async def query(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
            self.backend_calls += 1
            async with asyncio.timeout(budget), admitted(self.bulkheads, {"loki": 1}):
                return cast(LinesAnswer, await self.loki.untraced_answer(  # type: ignore[attr-defined]
                    window, sorted(services) if services is not None else None, limit, tenant))
        return query

    def _search_query(self, tenant: str | None, budget: float) -> Callable[[str, Window, int], Awaitable[SearchAnswer]]:
        async def query(service: str, search: Window, depth: int) -> SearchAnswer:
            self.backend_calls += 1
            async with asyncio.timeout(budget), admitted(self.bulkheads, {"jaeger": 1}):
                try:
                    return cast(SearchAnswer, await self.jaeger.service_traces(service, search, depth, tenant))  # type: ignore[attr-defined]
                except SourceError:
                    # Jaeger answered, but not with a search: the others of this service are unknown, and
                    # stay so for the share's time rather than be asked again by every correlation.
                    return SearchAnswer(search, {}, False, known=False)
        return query

    def untraced_early(self, hints: Sequence[Window], tenant: str | None, deadline: float) -> None:
        """With narrow hints, start the untraced-lines query now — every service (the static selector), over
        the window a trace around each hint would need — instead of after Jaeger; each correlation then takes
        its trace's services and window out of it (untraced_share.py), or asks on its own if it does not fit."""
        s = self.settings.join
        if not s.untraced or not self._shares(self.loki, "untraced_answer"):
            return
        # A trace inside the hint, or up to 1 s long around a single instant, with its margins (untraced_window).
        pad = int(s.clock_skew_ms * 1_000_000) + _EARLY_UNTRACED_PAD_NS
        wanted = [hint.widened(pad) for hint in hints if hint.end_ns - hint.start_ns <= _EARLY_UNTRACED_MAX_NS]
        for joint in clusters(wanted):
            self.shared.prefetch_lines(self._lines_query(tenant, deadline - time.monotonic()), joint, None, tenant)

    def prime_untraced(self, scopes: Sequence[tuple[Sequence[str], Window]], tenant: str | None,
                       jaeger_tenant: str | None, deadline: float) -> None:
        """Start the shared lookups several traces will need (/investigate): one lines query per service set
        over the set's joint window, one search per service over its joint search window."""
        s = self.settings.join
        if not s.untraced:
            return
        budget = deadline - time.monotonic()
        lines: dict[tuple[str, ...], list[Window]] = {}
        searches: dict[str, list[Window]] = {}
        for services, window in scopes:
            lines.setdefault(tuple(sorted(services)), []).append(window)
            if s.untraced_overlap_check and 0 < len(services) <= s.untraced_overlap_max_services:
                for name in services:
                    searches.setdefault(name, []).append(others_search_window(window))
        if self._shares(self.loki, "untraced_answer"):
            for key, windows in lines.items():
                for joint in clusters(windows):
                    self.shared.prefetch_lines(self._lines_query(tenant, budget), joint, key, tenant)
        if self._shares(self.jaeger, "service_traces"):
            for name, windows in searches.items():
                for joint in clusters(windows):
                    members = sum(1 for w in windows if joint.start_ns <= w.start_ns and w.end_ns <= joint.end_ns)
                    depth = min(_OTHER_TRACES_DEPTH * members, 1000)
                    self.shared.prefetch_search(self._search_query(jaeger_tenant, budget), name, joint, depth, jaeger_tenant)

    async def _run(
        self, name: str, call: Awaitable[SourceResult[T]], source_settings: Any, deadline: float
    ) -> tuple[SourceReport, SourceResult[T] | None]:
        """Await one source inside its deadline; every failure becomes a report, never an exception."""
        self.backend_calls += 1
        started = time.monotonic()
        budget = min(self.settings.source_deadline(source_settings), deadline - started)
        # Retries below this source must stop before the budget ends (this task's context only).
        retry_deadline.set(started + budget)
        result: SourceResult[T] | None = None
        truncated = False
        with tracer.start_as_current_span(_SPAN_NAMES.get(name) or f"source {name}") as span:
            # One coroutine per source, the report made once at the end (bench P3: four per correlation).
            try:
                if budget <= 0:
                    close = getattr(call, "close", None)
                    if close:
                        close()
                    status: SourceStatus = SourceStatus.TIMEOUT
                    error: str | None = f"{name}: no time left in the {self.settings.deadline_seconds}s deadline"
                else:
                    async with asyncio.timeout(budget):
                        result = await call
                    status, error = (SourceStatus.NOT_FOUND if result.not_found else SourceStatus.OK), result.note
            except TimeoutError:
                status, error = SourceStatus.TIMEOUT, f"{name}: no complete answer within {budget:.2f}s"
            except SourceError as exc:
                status = SourceStatus(exc.status) if exc.status in SourceStatus._value2member_map_ else SourceStatus.ERROR
                error, truncated = str(exc), exc.truncated
            except Exception as exc:  # a parser meeting garbage must not become a 500
                log.exception("source %s failed unexpectedly", name)
                status, error = SourceStatus.BAD_RESPONSE, f"{name}: unexpected answer ({type(exc).__name__})"
            ms = round((time.monotonic() - started) * 1000, 3)
            if result is None:
                report = _source_report(status, ms, 0, truncated, error, None)
            else:
                report = _source_report(status, ms, _count(result.value), result.truncated, error, result.cut)
                before = self.latency_ms.get(name)
                self.latency_ms[name] = ms if before is None else 0.8 * before + 0.2 * ms
            if span is not INVALID_SPAN:  # (the no-op span records nothing: tracing off, nothing current)
                span.set_attribute("correlator.source.status", status.value)
            return report, result

    @without_gc
    def _assemble(
        self,
        trace_id: TraceId,
        window: Window,
        jaeger_res: tuple[SourceReport, SourceResult[Trace | None] | None],
        loki_res: tuple[SourceReport, SourceResult[tuple[LogLine, ...]] | None],
        prom_res: tuple[SourceReport, SourceResult[tuple[Exemplar, ...]] | None],
        untraced: _Untraced | None = None,
    ) -> Outcome:
        trace = jaeger_res[1].value if jaeger_res[1] is not None else None
        if trace is not None and not trace.spans:
            trace = None
        logs = loki_res[1].value if loki_res[1] is not None else ()
        exemplars = prom_res[1].value if prom_res[1] is not None else ()
        sources = {"jaeger": jaeger_res[0], "loki": loki_res[0], "prometheus": prom_res[0]}
        notes = (LOWER64_NOTE,) if trace_id.lower64_only else ()
        if trace is None:
            trace_level = Placement(None, Match.TRACE)
            correlation = Correlation(
                trace_id.hex, window, None, logs, (trace_level,) * len(logs), exemplars,
                (trace_level,) * len(exemplars), (), (), sources, notes,
            )
            return Outcome(correlation, None)
        tree = build_tree(trace)
        reference = tree.by_id[tree.roots[0]].service if tree.roots else None
        clock = reused_clock(untraced.clock, tree, reference) if untraced is not None else None
        if clock is None:
            clock = estimate_clocks(list(tree.by_id.values()), reference, tree.by_id)
        log_places, exemplar_places = join(tree, logs, exemplars, self.settings.join.clock_skew_ms, clock.offsets)
        span_logs = lines_by_span(logs, log_places)  # evidence: errors, waits and retries the lines describe
        # Inferred lines are not the trace's own: never evidence, never in `log_places`.
        analysis = analyse(tree, self.settings.analysis, span_logs)
        inferred = (attach_untraced(tree, untraced.lines, untraced.other_traces, clock.offsets)
                    if untraced is not None else [])
        correlation = _correlation(
            trace_id.hex, window, trace, logs, log_places, exemplars, exemplar_places,
            analysis.critical_path, analysis.findings + skew_findings(clock, tree.by_id), sources, notes,
            tuple(line for line, _p in inferred), tuple(p for _l, p in inferred),
            untraced.report if untraced is not None else None,
            clock,
        )
        return _outcome(correlation, tree, False, None, None)

    def forget(self, trace_id: TraceId, tenant: str | None) -> None:
        """Drop a cached answer (MCP: the worker no longer holds a big trace's model, so correlate it again)."""
        key = (tenant, trace_id.hex + ("/low64" if trace_id.lower64_only else ""))
        self._cache.pop(key)
        self._big_cache.pop(key)

    def _cacheable(self, outcome: Outcome) -> bool:
        c = outcome.correlation
        end_ns = c.trace.end_ns if c.trace is not None else outcome.prerendered.trace_end_ns if outcome.prerendered else None
        if end_ns is None or outcome.cached:
            return False
        if any(r.status is not SourceStatus.OK or r.truncated for r in c.sources.values()):
            return False
        if c.untraced is not None and (c.untraced.status not in ("ok", "off") or c.untraced.overlap_check == "late"):
            return False  # a later answer may know more (a late lookup, `high` instead of `medium`)
        # A trace that ended moments ago may still be receiving spans and logs.
        age_s = self._wall() - end_ns / 1e9
        return age_s >= self.settings.cache.settle_seconds


# Every correlation's answer, without the frozen `__init__`'s `object.__setattr__` per field (15 + 5 fields; every field
# passed, in declaration order: tests/test_construct.py).
_correlation = fast_constructor(Correlation)
_outcome = fast_constructor(Outcome)
_source_report = fast_constructor(SourceReport)  # three per correlation (every field passed)
_new_untraced = fast_constructor(_Untraced)
_untraced_report = fast_constructor(UntracedReport)
_SPAN_NAMES = {name: f"source {name}" for name in SOURCES}


def untraced_scope(trace: Trace, clock_skew_ms: float) -> tuple[list[str], Window]:
    """The services of a trace and the window its untraced lines are looked for in (pure: the worker
    process computes it for big traces)."""
    return _scope_of(trace, clock_skew_ms, scope_clock(trace)[2])


# (the spans estimated, the reference service, the estimate): what `untraced_scope` computes the clocks from.
ScopeClock = tuple[Sequence[Span], str | None, ClockEstimate]


def scope_clock(trace: Trace) -> ScopeClock:
    """The clocks as the untraced scope reads them: the spans as Jaeger gave them, the first root's service the reference."""
    reference = next((sp.service for sp in trace.spans if sp.parent_span_id is None), None)
    return trace.spans, reference, estimate_clocks(trace.spans, reference)


def _scope_of(trace: Trace, clock_skew_ms: float, clock: ClockEstimate,
              known: tuple[list[str], Window] | None = None) -> tuple[list[str], Window]:
    """`known`: the trace's services (sorted) and span, as `_correlate` found them (two passes over the spans fewer)."""
    services, span = known if known is not None else (sorted({span.service for span in trace.spans}), None)
    # A clock shown to be off moves that service's lines by as much: look that much further.
    return services, untraced_window(trace, int(clock_skew_ms * 1_000_000) + clock.max_offset_ns(), span)


def reused_clock(scope: ScopeClock | None, tree: SpanTree, reference: str | None) -> ClockEstimate | None:
    """The scope's estimate when it is the one `_assemble` would compute: the same reference, and the tree's spans
    (`by_id`, in its order) the very spans the scope read, in theirs (no repair made: `estimate_clocks` reads nothing else)."""
    if scope is None:
        return None
    spans, scope_reference, estimate = scope
    if scope_reference != reference or len(spans) != len(tree.by_id) or not all(map(is_, tree.by_id.values(), spans)):
        return None
    return estimate


def _union(a: Window | None, b: Window) -> Window:
    return b if a is None else Window(min(a.start_ns, b.start_ns), max(a.end_ns, b.end_ns))


def _all_done(futures: Sequence[asyncio.Future[Any]]) -> asyncio.Event:
    """An event set once every one of `futures` is done (awaiting it cancels none of them)."""
    event, left = asyncio.Event(), [len(futures)]

    def one(_f: asyncio.Future[Any]) -> None:
        left[0] -= 1
        if left[0] == 0:
            event.set()
    for future in futures:
        future.add_done_callback(one)
    return event


async def _both(first: Awaitable[A], second: Awaitable[B] | None) -> tuple[asyncio.Future[A], asyncio.Future[B] | None]:
    """Both awaited at once, each outcome (value or exception) as a done future: `first` in a task, `second` in
    this one (no task for it). Cancelled, the task is cancelled too."""
    loop = asyncio.get_running_loop()
    if isinstance(first, asyncio.Future) and first.done():  # already answered (`_ready`): only `second` to await
        if second is None:
            return first, None
        answer: asyncio.Future[B] = loop.create_future()
        try:
            answer.set_result(await second)
        except Exception as exc:
            answer.set_exception(exc)
        return first, answer
    if second is None:
        only: asyncio.Future[A] = loop.create_future()
        try:
            only.set_result(await first)
        except Exception as exc:
            only.set_exception(exc)
        return only, None
    task = asyncio.ensure_future(first)
    done: asyncio.Future[B] = loop.create_future()
    try:
        try:
            done.set_result(await second)
        except Exception as exc:
            done.set_exception(exc)
        if not task.done():
            await asyncio.wait((task,))
    except BaseException:
        task.cancel()
        raise
    return task, done


def _ready(value: A) -> asyncio.Future[A]:
    done: asyncio.Future[A] = asyncio.get_running_loop().create_future()
    done.set_result(value)
    return done


async def _settle(tasks: Sequence[asyncio.Future[Any]], stop: tuple[asyncio.Event, float] | None,
                  ratio: float) -> set[asyncio.Future[Any]]:
    """Wait for `tasks`; with `stop`, only until `ratio` × (its time since the start) after its event. The
    tasks still running then are cancelled (a shared lookup under them goes on) and returned."""
    pending = set(tasks)
    waiter: asyncio.Future[None] | None = None
    try:
        if stop is not None:
            event, started = stop

            async def grace() -> None:
                await event.wait()
                await asyncio.sleep(max(_MIN_WAIT_S, ratio * (time.monotonic() - started)))
            waiter = asyncio.ensure_future(grace())
        while pending and (waiter is None or not waiter.done()):
            done, _ = await asyncio.wait(pending | ({waiter} if waiter else set()), return_when=asyncio.FIRST_COMPLETED)
            pending -= done
    finally:
        for task in (*pending, *((waiter,) if waiter else ())):
            task.cancel()
    return pending


def _failed(report: SourceReport, exc: Exception, budget: float) -> tuple[SourceReport, None]:
    """The worker could not turn a big answer into a trace: the trace is missing, and the report says why."""
    if isinstance(exc, TimeoutError):
        error = f"jaeger: the big trace was not analysed within {budget}s"
        return replace(report, status=SourceStatus.TIMEOUT, items=0, error=error), None
    return replace(report, status=SourceStatus.BAD_RESPONSE, items=0, error=str(exc)), None


def _whole_ids(line: LogLine, settings: Settings) -> set[str]:
    """The 32-hex trace IDs a line carries (metadata or body)."""
    found = set()
    for name in settings.loki.trace_id_fields:
        value = line.metadata.get(name)
        if value:
            try:
                found.add(parse_trace_id(value).hex)
            except InvalidTraceId:
                pass
    in_line = extract_trace_context(line.line, settings.loki).trace_id
    if in_line:
        found.add(in_line)
    return found


def _count(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, Trace):
        return len(value.spans)
    if isinstance(value, (tuple, list)):
        return len(value)
    return 1


# A model this big (~1 KB a span) is cached among the big answers (cache.max_big_entries), as a worker's
# answer is: with everything on the event loop (server.offload_bytes 0) each cached 100k-span model held
# ~96 MB, up to cache.max_entries of them (bench P5: 2 GB under P8's load).
BIG_MODEL_SPANS = 10_000


def _big(outcome: Outcome) -> bool:
    trace = outcome.correlation.trace
    return outcome.prerendered is not None or (trace is not None and len(trace.spans) >= BIG_MODEL_SPANS)
