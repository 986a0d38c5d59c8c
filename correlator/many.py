"""Many correlations at once, for the price of a few: the orchestration behind /investigate.

K traces correlated one by one would cost K Jaeger fetches, 2K Loki queries and K exemplar
queries. Here the Jaeger fetches run concurrently (bounded) beside one exemplar query over the
hints' joint window, then the Loki lookups run once per *service set* over the joint window of
its traces, matching any of their IDs; each answer is split per trace and joined and analysed exactly as
`Correlator.correlate` does. The cache is read and filled with the same rules, and every trace
being computed here is registered as in flight, so a concurrent `/correlate` of one of them
waits for this batch instead of fetching again (and the other way round).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from correlator.bulkhead import Overloaded, admitted
from correlator.correlate import Correlator, Outcome, _Untraced
from correlator.errors import ShuttingDown, SourceUnavailable
from correlator.ids import TraceId
from correlator.model import Exemplar, LogLine, SourceReport, SourceStatus, Trace, Window
from correlator.offload import KEEP_OUTLINES, Outline, RawTrace
from correlator.single_flight import cancelling_itself
from correlator.sources import SourceResult

__all__ = ["Failed", "Wanted", "correlate_many", "refuse_when_closed"]

# Same margin `Correlator` gives Jaeger around a hint: a trace may start well before its exemplar.
_JAEGER_HINT_MARGIN_NS = 15 * 60 * 1_000_000_000

T = TypeVar("T")
TraceRes = tuple[SourceReport, SourceResult[Trace | None] | None]


class ManyLogSource(Protocol):
    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window, services: Sequence[str] | None,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[LogLine, ...]]]: ...


class ManyExemplarSource(Protocol):
    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[Exemplar, ...]]]: ...


@dataclass(frozen=True, slots=True)
class Wanted:
    trace_id: TraceId
    hint: Window  # where the trace is known to be (an exemplar's instant)
    # For a big trace (assembled in the worker process, offload.py, whose outcome has no tree): a
    # module-level `fn(correlation, tree, *args)` made there, its result in `Outcome.then`.
    then: tuple[Callable[..., Any], tuple[Any, ...]] | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A trace that produced no outcome at all (the whole batch died or the deadline passed first)."""

    trace_id: str
    reason: str


def refuse_when_closed(correlator: Correlator) -> None:
    """After `Correlator.aclose` (the backend clients close next) an investigation starts nothing: refused, as a correlation is."""
    if correlator._closed:
        raise ShuttingDown("the correlator is shutting down")


async def correlate_many(correlator: Correlator, wanted: Sequence[Wanted], tenant: str | None, *,
                         deadline: float, concurrency: int) -> tuple[dict[str, Outcome], dict[str, Failed]]:
    """Outcome per trace hex; `deadline` is a `time.monotonic()` instant shared by every backend call.
    Raises ShuttingDown after `Correlator.aclose`, and when `aclose` ends work this investigation waits on."""
    refuse_when_closed(correlator)
    outcomes: dict[str, Outcome] = {}
    failed: dict[str, Failed] = {}
    elsewhere: dict[str, asyncio.Future[Outcome]] = {}
    todo: list[Wanted] = []
    mine: dict[str, asyncio.Future[Outcome]] = {}
    loop = asyncio.get_running_loop()
    for w in {w.trace_id.hex: w for w in wanted}.values():
        key = (tenant, w.trace_id.hex)
        cached = correlator._cache.get(key)
        if cached is not None:
            outcomes[w.trace_id.hex] = Outcome(cached.correlation, cached.tree, cached=True)
            continue
        shared = correlator._inflight.get(key)
        if shared is not None and not _ended_badly(shared):
            elsewhere[w.trace_id.hex] = shared
            continue
        # (Or one that ended badly, its entry not forgotten yet — a loop turn later: a failure this batch never shared.)
        future: asyncio.Future[Outcome] = loop.create_future()
        correlator._inflight[key] = future
        # Forgets this one only: one ended badly may have been replaced (above, or by /correlate) before its callback runs.
        future.add_done_callback(partial(_forget_own, correlator._inflight, key))
        mine[w.trace_id.hex] = future
        todo.append(w)

    # The batch runs as its own task: a caller that goes away must not cancel what a concurrent
    # /correlate of one of these traces is waiting for.
    batch = asyncio.ensure_future(_compute(correlator, todo, tenant, deadline, concurrency))
    correlator._batches.add(batch)  # `aclose` cancels and awaits it: cancelling the futures above does not end it

    def settle(task: asyncio.Future[dict[str, Outcome]]) -> None:
        correlator._batches.discard(task)
        if not task.cancelled() and task.exception() is None:
            # Cached as the batch ends, not when this caller resumes: one whose client left never would.
            for hex_, outcome in task.result().items():
                if correlator._cacheable(outcome):
                    (correlator._cache if outcome.prerendered is None else correlator._big_cache).put((tenant, hex_), outcome)
        for hex_, future in mine.items():
            if future.done():
                continue
            if task.cancelled():
                future.cancel()
            elif (error := task.exception()) is not None:
                future.set_exception(error)  # a bug, not a backend: waiting /correlate calls see it too
                future.exception()  # retrieved here, so an unawaited future does not log it again
            else:
                future.set_result(task.result()[hex_])

    batch.add_done_callback(settle)
    try:
        computed = await asyncio.shield(batch)
    except asyncio.CancelledError:
        if batch.cancelled() and correlator._closed and not cancelling_itself():  # `aclose` ended it, not this caller's canceller
            raise ShuttingDown("the correlator is shutting down") from None
        raise
    outcomes.update(computed)

    if elsewhere:
        remaining = max(0.0, deadline - time.monotonic())
        _done, pending = await asyncio.wait([asyncio.shield(f) for f in elsewhere.values()], timeout=remaining)
        for hex_, future in elsewhere.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                outcomes[hex_] = future.result()
            elif not future.done():
                failed[hex_] = Failed(hex_, "a concurrent correlation of this trace did not finish within the deadline")
            else:
                failed[hex_] = Failed(hex_, "a concurrent correlation of this trace failed")
        for waiter in pending:
            waiter.cancel()
        if correlator._closed and any(f.cancelled() for f in elsewhere.values()):  # `aclose` ended what it waited on
            raise ShuttingDown("the correlator is shutting down")
    return outcomes, failed


def _ended_badly(future: asyncio.Future[Outcome]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _forget_own(inflight: dict[tuple[str | None, str], asyncio.Future[Outcome]], key: tuple[str | None, str],
                future: asyncio.Future[Outcome]) -> None:
    if inflight.get(key) is future:
        del inflight[key]


async def _end(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel what a batch started beside itself and wait until it has ended: a batch ended early (`aclose`, before the
    backend clients close) leaves no query of it running."""
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)


async def _compute(correlator: Correlator, todo: Sequence[Wanted], tenant: str | None, deadline: float,
                   concurrency: int) -> dict[str, Outcome]:
    if not todo:
        return {}
    s = correlator.settings
    jaeger_tenant = tenant if s.jaeger.forward_tenant else None
    prom_tenant = tenant if s.prometheus.forward_tenant else None
    gate = asyncio.Semaphore(concurrency)
    # The service's Loki and Prometheus sources answer for several traces at once.
    loki, prometheus = cast(ManyLogSource, correlator.loki), cast(ManyExemplarSource, correlator.prometheus)

    outlines: dict[str, Outline | None] = {}
    big = 0

    async def fetch_trace(w: Wanted) -> TraceRes:
        nonlocal big
        async with gate:
            # A big answer stays bytes here (the worker parses it, as for /correlate: the loop stays free).
            def call() -> Awaitable[SourceResult[Any]]:
                return correlator._fetch_trace(w.trace_id, w.hint.widened(_JAEGER_HINT_MARGIN_NS), jaeger_tenant)

            found = await correlator._run("jaeger", _slotted(correlator, "jaeger", 1, call), s.jaeger, deadline)
        if found[1] is not None and isinstance(found[1].value, RawTrace):
            # The worker holds each parsed big trace until its assembly, a few at a time (offload.KEEP_OUTLINES).
            big += 1
            if big > KEEP_OUTLINES:
                error = (f"jaeger: a big trace (over server.offload_bytes); an investigation reads at most {KEEP_OUTLINES} "
                         "of those — open it on its own with /correlate")
                return replace(found[0], status=SourceStatus.SKIPPED, items=0, error=error), None
        found, outlines[w.trace_id.hex] = await correlator._outline(found)
        return found

    # Exemplars need no trace: ask for them over the hints' joint window while the traces arrive
    # (as a hinted /correlate does), so only Loki waits for Jaeger.
    hints = Window(min(w.hint.start_ns for w in todo), max(w.hint.end_ns for w in todo))
    prom_task = asyncio.ensure_future(correlator._run(
        "prometheus", _slotted(correlator, "prometheus", 1, lambda: prometheus.fetch_many([w.trace_id for w in todo], hints, prom_tenant)),
        s.prometheus, deadline))
    # With the static selector (loki.selector_strategy) Loki needs no services either: one pair for
    # all traces over the hints' window, beside Jaeger — one round less, a wider scan in Loki.
    if s.loki.selector_strategy == "static":  # its untraced lines too (the hints are instants: ± a margin)
        correlator.untraced_early([w.hint for w in todo], tenant, deadline)
    static_task = asyncio.ensure_future(correlator._run(
        "loki", _slotted(correlator, "loki", 2, lambda: loki.fetch_many([w.trace_id for w in todo], hints, None, tenant)), s.loki, deadline)
    ) if s.loki.selector_strategy == "static" else None
    try:
        fetched = await asyncio.gather(*(fetch_trace(w) for w in todo))
    except BaseException:
        await _end((prom_task, static_task))
        raise
    traces = dict(zip((w.trace_id.hex for w in todo), fetched, strict=True))

    # Where each trace stands in time, and which services' streams hold its lines.
    windows: dict[str, Window] = {}
    groups: dict[tuple[str, ...] | None, list[Wanted]] = defaultdict(list)
    for w in todo:
        trace = _trace_of(traces[w.trace_id.hex])
        outline = outlines.get(w.trace_id.hex)
        if outline is not None:  # a big trace: what the worker's parse says of it
            windows[w.trace_id.hex] = Window(outline.start_ns, outline.end_ns)
            groups[tuple(sorted(outline.services))].append(w)
        elif trace is not None:
            windows[w.trace_id.hex] = Window(trace.start_ns, trace.end_ns)
            groups[tuple(sorted({span.service for span in trace.spans}))].append(w)
        else:
            windows[w.trace_id.hex] = w.hint
            groups[None].append(w)  # the configured static selector, as for one trace without a trace

    def joint(members: Sequence[Wanted]) -> Window:
        spans = [windows[m.trace_id.hex] for m in members]
        return Window(min(x.start_ns for x in spans), max(x.end_ns for x in spans))

    # Lines without any trace ID (join.untraced): per trace, as /correlate does, so an outcome shared
    # with /correlate or its cache is the same either way. Beside Loki, within the same bound; the
    # queries are asked once per service set (lines) and service (other traces) over the traces' joint
    # window, and each trace's answer is cut out of them (untraced_share.py).
    scopes = [scope for w in todo if (scope := correlator._scope(traces[w.trace_id.hex], outlines.get(w.trace_id.hex)))
              is not None]
    correlator.prime_untraced([(services, window) for services, window, _clock in scopes], tenant, jaeger_tenant, deadline)

    async def untraced_of(w: Wanted) -> _Untraced:
        async with gate:
            return await correlator._untraced(w.trace_id, traces[w.trace_id.hex], tenant, jaeger_tenant, deadline,
                                              outlines.get(w.trace_id.hex))

    untraced_task = asyncio.ensure_future(asyncio.gather(*(untraced_of(w) for w in todo)))
    try:
        if static_task is not None:
            group_list: list[tuple[tuple[str, ...] | None, list[Wanted]]] = [(None, list(todo))]
            static_answer, prom_answer = await asyncio.gather(static_task, prom_task)
            loki_answers = [static_answer]
        else:
            group_list = list(groups.items())
            def lines_of(services: tuple[str, ...] | None, members: list[Wanted]) -> Callable[[], Awaitable[Any]]:
                return lambda: loki.fetch_many([m.trace_id for m in members], joint(members), list(services) if services else None,
                                               tenant)

            loki_calls = [correlator._run("loki", _slotted(correlator, "loki", 2, lines_of(services, members)), s.loki, deadline)
                          for services, members in group_list]
            answers, prom_answer = await asyncio.gather(asyncio.gather(*loki_calls), prom_task)
            loki_answers = list(answers)
    except BaseException:  # ended early (`aclose`, a bug): its untraced lookups too, not left running on their own
        await _end((untraced_task, prom_task, static_task))
        raise

    untraced = dict(zip((w.trace_id.hex for w in todo), await untraced_task, strict=True))
    logs_of: dict[str, tuple[SourceReport, SourceResult[tuple[LogLine, ...]] | None]] = {}
    for (_services, members), answer in zip(group_list, loki_answers, strict=True):
        for m in members:
            logs_of[m.trace_id.hex] = _share(answer, m.trace_id.hex)
    outcomes = {}
    for w in todo:
        hex_ = w.trace_id.hex
        outline = outlines.get(hex_)
        if outline is not None:  # in the worker process, one at a time (it keeps one parsed trace per outline)
            outcomes[hex_] = await correlator._finish(w.trace_id, windows[hex_], traces[hex_], logs_of[hex_],
                                                      _share(prom_answer, hex_), untraced[hex_], outline, tenant, deadline,
                                                      w.then)
        else:
            outcomes[hex_] = correlator._assemble(w.trace_id, windows[hex_], traces[hex_], logs_of[hex_],
                                                  _share(prom_answer, hex_), untraced[hex_])
    return outcomes


async def _slotted(correlator: Correlator, source: str, weight: int, call: Callable[[], Awaitable[T]]) -> T:
    """`call()` inside `weight` slots of the source's bulkhead, as /correlate's queries are (bulkhead.py): an
    investigation counts against the backend's cap too. Refused, that source is unavailable for this batch.
    A factory, not a coroutine: closed unstarted (no time left in the deadline), this leaves nothing unawaited."""
    try:
        async with admitted(correlator.bulkheads, {source: weight}):
            return await call()
    except Overloaded as exc:
        raise SourceUnavailable(source, f"not asked: this worker has too many {source} queries in flight ({exc})") from None


def _trace_of(res: TraceRes) -> Trace | None:
    result = res[1]
    if result is None or not isinstance(result.value, Trace) or not result.value.spans:  # none, or a big one's RawTrace
        return None
    return result.value


def _share(answer: tuple[SourceReport, SourceResult[dict[str, tuple[T, ...]]] | None],
           hex_: str) -> tuple[SourceReport, SourceResult[tuple[T, ...]] | None]:
    """One trace's part of a shared answer, reported as if it had been asked for alone."""
    report, result = answer
    if result is None:
        return report, None
    items = result.value.get(hex_, ())
    return (SourceReport(report.status, report.ms, len(items), report.truncated, report.error, report.cut),
            SourceResult(items, truncated=result.truncated, note=result.note, cut=result.cut))
