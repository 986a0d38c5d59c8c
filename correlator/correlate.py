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
from typing import Any, Protocol, TypeVar, cast

from correlator.analysis import analyse
from correlator.bulkhead import Bulkhead, admitted
from correlator.cache import TTLCache
from correlator.config import Settings
from correlator.errors import SourceError
from correlator.gcpause import without_gc
from correlator.ids import TraceId
from correlator.join import join
from correlator.offload import Offloader, Outline, Prerendered, RawTrace, WorkerFailed
from correlator.model import (
    Correlation,
    Exemplar,
    LogLine,
    Match,
    Placement,
    SourceReport,
    SourceStatus,
    Trace,
    Window,
)
from correlator.sources import SourceResult
from correlator.sources._resilience import deadline as retry_deadline
from correlator.sources.jaeger import JaegerSource
from correlator.spantree import SpanTree, build_tree
from correlator.telemetry import tracer

__all__ = ["Correlator", "Outcome", "SOURCES"]

log = logging.getLogger(__name__)

SOURCES = ("jaeger", "loki", "prometheus")
_ERROR_LEVELS = frozenset({"error", "err", "fatal", "critical", "crit", "emerg", "alert", "panic"})
# Jaeger's storage lookup only needs a bound, not a tight one: a trace may start well before
# the instant an exemplar or log line was stamped.
_JAEGER_HINT_MARGIN_NS = 15 * 60 * 1_000_000_000

T = TypeVar("T")
# Backend queries per source in each phase (a Loki lookup is two queries: line filter + metadata).
_ALL_AT_ONCE = {"jaeger": 1, "loki": 2, "prometheus": 1}
_TRACE_FIRST = {"jaeger": 1}
_THEN_THE_REST = {"loki": 2, "prometheus": 1}


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
        # One bulkhead per backend (this worker's share): see correlator/bulkhead.py.
        self.bulkheads = {
            name: Bulkhead(name, src.max_in_flight, src.max_queued, settings.server.admission_wait_seconds,
                           settings.server.retry_after_seconds)
            for name in SOURCES for src in [getattr(settings, name)]
        }
        self.backend_calls = 0  # for tests and benchmarks: a cache hit adds none
        self.offload = offload  # big traces to a worker process (None: everything on the event loop)

    async def correlate(self, trace_id: TraceId, hint: Window | None = None, tenant: str | None = None) -> Outcome:
        key = (tenant, trace_id.hex)
        cached = self._cache.get(key) or self._big_cache.get(key)
        if cached is not None:
            return replace(cached, cached=True)
        # Identical concurrent requests (a dashboard refresh, a retry storm) share one fetch.
        shared = self._inflight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._correlate(trace_id, hint, tenant))
            self._inflight[key] = shared
            shared.add_done_callback(lambda _f: self._inflight.pop(key, None))
        outcome = await asyncio.shield(shared)
        if self._cacheable(outcome):
            (self._cache if outcome.prerendered is None else self._big_cache).put(key, outcome)
        return outcome

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
            async with admitted(self.bulkheads, _ALL_AT_ONCE):
                jaeger_res, loki_res, prom_res = await asyncio.gather(
                    self._run("jaeger", self._fetch_trace(trace_id, jaeger_window, jaeger_tenant), s.jaeger, deadline),
                    self._run("loki", self.loki.fetch(trace_id, hint, None, tenant), s.loki, deadline),
                    self._run("prometheus", self.prometheus.fetch(trace_id, hint, prom_tenant), s.prometheus, deadline),
                )
            window, outline = hint, None
        else:
            now_ns = int(self._wall() * 1e9)
            lookback = Window(now_ns - int(s.jaeger.lookback_seconds * 1e9), now_ns + 60_000_000_000)
            async with admitted(self.bulkheads, _TRACE_FIRST):
                jaeger_res = await self._run("jaeger", self._fetch_trace(trace_id, lookback, jaeger_tenant), s.jaeger, deadline)
            trace = jaeger_res[1].value if jaeger_res[1] is not None else None
            outline = None
            services: Sequence[str] | None
            if isinstance(trace, RawTrace):
                jaeger_res, outline = await self._outline(jaeger_res[0], trace)
                trace = None
            if outline is not None:
                window = Window(outline.start_ns, outline.end_ns)
                services = list(outline.services)
            elif trace is not None and trace.spans:
                window = Window(trace.start_ns, trace.end_ns)
                services = sorted({span.service for span in trace.spans})
            else:
                # No trace to narrow the search: look for orphan logs/exemplars in the recent past.
                window = Window(now_ns - int(s.orphan_lookback_seconds * 1e9), now_ns)
                services = None
            async with admitted(self.bulkheads, _THEN_THE_REST):
                loki_res, prom_res = await asyncio.gather(
                    self._run("loki", self.loki.fetch(trace_id, window, services, tenant), s.loki, deadline),
                    self._run("prometheus", self.prometheus.fetch(trace_id, window, prom_tenant), s.prometheus, deadline),
                )
        return await self._finish(trace_id, window, jaeger_res, loki_res, prom_res, outline)

    def _fetch_trace(self, trace_id: TraceId, window: Window | None, tenant: str | None) -> Awaitable[SourceResult[Any]]:
        if self.offload is None or not isinstance(self.jaeger, JaegerSource):
            return self.jaeger.fetch(trace_id, window, tenant)
        return self.jaeger.fetch(trace_id, window, tenant, raw_above=self.offload.threshold)  # big ones: RawTrace

    async def _outline(self, report: SourceReport, raw: RawTrace) -> tuple[tuple[SourceReport, Any], Outline | None]:
        """A big trace's services and span, from the worker; a trace without spans becomes not_found."""
        assert self.offload is not None
        try:
            async with asyncio.timeout(self.settings.deadline_seconds):
                outline = await self.offload.outline(raw)
        except (WorkerFailed, TimeoutError) as exc:
            return _failed(report, exc, self.settings.deadline_seconds), None
        if outline is None:
            return (replace(report, status=SourceStatus.NOT_FOUND, items=0), None), None
        # The worker keeps the parsed trace under the outline's token: the body can go now (32 MB at 100k spans).
        return (report, SourceResult(replace(raw, body=b""))), outline

    async def _finish(
        self, trace_id: TraceId, window: Window, jaeger_res: tuple[SourceReport, SourceResult[Any] | None],
        loki_res: tuple[SourceReport, SourceResult[tuple[LogLine, ...]] | None],
        prom_res: tuple[SourceReport, SourceResult[tuple[Exemplar, ...]] | None], outline: Outline | None,
    ) -> Outcome:
        raw = jaeger_res[1].value if jaeger_res[1] is not None else None
        if isinstance(raw, RawTrace) and self.offload is not None:
            reports = {"jaeger": jaeger_res[0], "loki": loki_res[0], "prometheus": prom_res[0]}
            logs = loki_res[1].value if loki_res[1] is not None else ()
            exemplars = prom_res[1].value if prom_res[1] is not None else ()
            try:
                # Bounded like a backend: a worker that never answers must not hang the request.
                async with asyncio.timeout(self.settings.deadline_seconds):
                    light, prerendered = await self.offload.assemble(
                        self.settings, trace_id.hex, window, raw, outline.token if outline else None, reports, logs, exemplars)
                return Outcome(light, None, prerendered=prerendered)
            except (WorkerFailed, TimeoutError) as exc:
                jaeger_res = _failed(jaeger_res[0], exc, self.settings.deadline_seconds)
        return self._assemble(trace_id, window, cast(tuple[SourceReport, SourceResult[Trace | None] | None], jaeger_res),
                              loki_res, prom_res)

    async def _run(
        self, name: str, call: Awaitable[SourceResult[T]], source_settings: Any, deadline: float
    ) -> tuple[SourceReport, SourceResult[T] | None]:
        """Await one source inside its deadline; every failure becomes a report, never an exception."""
        self.backend_calls += 1
        started = time.monotonic()
        budget = min(self.settings.source_deadline(source_settings), deadline - started)

        def report(status: SourceStatus, error: str | None, result: SourceResult[T] | None = None,
                   truncated: bool = False) -> SourceReport:
            ms = round((time.monotonic() - started) * 1000, 3)
            items = _count(result.value) if result is not None else 0
            return SourceReport(status, ms, items, truncated or (result is not None and result.truncated), error)

        # Retries below this source must stop before the budget ends (this task's context only).
        retry_deadline.set(started + budget)
        with tracer.start_as_current_span(f"source {name}") as span:
            report_, result_ = await self._run_inner(name, call, budget, report)
            span.set_attribute("correlator.source.status", report_.status.value)
            return report_, result_

    async def _run_inner(
        self, name: str, call: Awaitable[SourceResult[T]], budget: float,
        report: Callable[..., SourceReport],
    ) -> tuple[SourceReport, SourceResult[T] | None]:
        try:
            if budget <= 0:
                close = getattr(call, "close", None)
                if close:
                    close()
                return report(SourceStatus.TIMEOUT, f"{name}: no time left in the {self.settings.deadline_seconds}s deadline"), None
            async with asyncio.timeout(budget):
                result = await call
        except TimeoutError:
            return report(SourceStatus.TIMEOUT, f"{name}: no complete answer within {budget:.2f}s"), None
        except SourceError as exc:
            status = SourceStatus(exc.status) if exc.status in SourceStatus._value2member_map_ else SourceStatus.ERROR
            return report(status, str(exc), truncated=exc.truncated), None
        except Exception as exc:  # a parser meeting garbage must not become a 500
            log.exception("source %s failed unexpectedly", name)
            return report(SourceStatus.BAD_RESPONSE, f"{name}: unexpected answer ({type(exc).__name__})"), None
        status = SourceStatus.NOT_FOUND if result.not_found else SourceStatus.OK
        return report(status, result.note, result), result

    @without_gc
    def _assemble(
        self,
        trace_id: TraceId,
        window: Window,
        jaeger_res: tuple[SourceReport, SourceResult[Trace | None] | None],
        loki_res: tuple[SourceReport, SourceResult[tuple[LogLine, ...]] | None],
        prom_res: tuple[SourceReport, SourceResult[tuple[Exemplar, ...]] | None],
    ) -> Outcome:
        trace = jaeger_res[1].value if jaeger_res[1] is not None else None
        if trace is not None and not trace.spans:
            trace = None
        logs = loki_res[1].value if loki_res[1] is not None else ()
        exemplars = prom_res[1].value if prom_res[1] is not None else ()
        sources = {"jaeger": jaeger_res[0], "loki": loki_res[0], "prometheus": prom_res[0]}
        if trace is None:
            trace_level = Placement(None, Match.TRACE)
            correlation = Correlation(
                trace_id.hex, window, None, logs, (trace_level,) * len(logs), exemplars,
                (trace_level,) * len(exemplars), (), (), sources,
            )
            return Outcome(correlation, None)
        tree = build_tree(trace)
        log_places, exemplar_places = join(tree, logs, exemplars, self.settings.join.clock_skew_ms)
        error_logs: dict[str, list[LogLine]] = {}
        for line, placement in zip(logs, log_places, strict=True):
            if placement.span_id is not None and (line.level or "").lower() in _ERROR_LEVELS:
                error_logs.setdefault(placement.span_id, []).append(line)
        analysis = analyse(tree, self.settings.analysis, error_logs)
        correlation = Correlation(
            trace_id.hex, window, trace, logs, log_places, exemplars, exemplar_places,
            analysis.critical_path, analysis.findings, sources,
        )
        return Outcome(correlation, tree)

    def _cacheable(self, outcome: Outcome) -> bool:
        c = outcome.correlation
        end_ns = c.trace.end_ns if c.trace is not None else outcome.prerendered.trace_end_ns if outcome.prerendered else None
        if end_ns is None or outcome.cached:
            return False
        if any(r.status is not SourceStatus.OK or r.truncated for r in c.sources.values()):
            return False
        # A trace that ended moments ago may still be receiving spans and logs.
        age_s = self._wall() - end_ns / 1e9
        return age_s >= self.settings.cache.settle_seconds


def _failed(report: SourceReport, exc: Exception, budget: float) -> tuple[SourceReport, None]:
    """The worker could not turn a big answer into a trace: the trace is missing, and the report says why."""
    if isinstance(exc, TimeoutError):
        error = f"jaeger: the big trace was not analysed within {budget}s"
        return replace(report, status=SourceStatus.TIMEOUT, items=0, error=error), None
    return replace(report, status=SourceStatus.BAD_RESPONSE, items=0, error=str(exc)), None


def _count(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, Trace):
        return len(value.spans)
    if isinstance(value, (tuple, list)):
        return len(value)
    return 1
