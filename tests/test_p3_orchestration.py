"""The orchestration's cheaper paths (docs/performance-p3.md "Session 9") give what the paths they replaced gave."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import Any

import pytest

from correlator.config import load_settings
from correlator.correlate import Correlator, _Untraced, _UntracedPlan
from correlator.errors import SourceError
from correlator.ids import parse_trace_id
from correlator.model import Exemplar, LogLine, Window
from correlator.sources import SourceResult
from correlator.sources._resilience import deadline as retry_deadline
from correlator.sources.loki import _each
from correlator.untraced_share import LinesAnswer, SearchAnswer
from tests.test_join import MS, T0, seed_trace


async def _call(outcome: str, steps: int, log: list[str], name: str) -> str:
    try:
        for _ in range(steps):
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        log.append(f"{name} cancelled")
        raise
    if outcome == "error":
        raise SourceError("loki", f"{name} failed")
    if outcome == "bug":
        raise ValueError(name)
    return name


def _shape(results: list[Any]) -> list[tuple[str, str]]:
    return [(type(r).__name__, str(r)) for r in results]


@pytest.mark.parametrize(("outcomes", "steps"), list(itertools.product(
    itertools.product(["ok", "error", "bug"], repeat=2), [(0, 0), (0, 3), (3, 0), (2, 2)])))
async def test_each_gives_what_gather_with_exceptions_gave(outcomes: tuple[str, str], steps: tuple[int, int]) -> None:
    log: list[str] = []
    names = ("line filter", "metadata")
    calls = [(outcome, step, log, name) for outcome, step, name in zip(outcomes, steps, names, strict=True)]
    gathered = await asyncio.gather(*(_call(*c) for c in calls), return_exceptions=True)
    each = await _each(_call(*c) for c in calls)
    assert _shape(each) == _shape(gathered) and log == []


async def test_each_cancelled_cancels_the_others_and_raises_as_gather_did() -> None:
    for runner in ("gather", "each"):
        log: list[str] = []
        calls = [_call("ok", 50, log, "line filter"), _call("ok", 50, log, "metadata")]
        waiting = asyncio.ensure_future(asyncio.gather(*calls, return_exceptions=True) if runner == "gather" else _each(calls))
        for _ in range(3):
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(3):
            await asyncio.sleep(0)
        assert sorted(log) == ["line filter cancelled", "metadata cancelled"], runner


# ------------------------------------------------------------------ session 11: nothing to wait for, no task

class _Jaeger:
    """The seed trace; each service's other traces from a shared search (`searches`: service → its answer)."""

    def __init__(self, searches: dict[str, Any]) -> None:
        self.searches = searches
        self.deadlines: list[float | None] = []

    async def fetch(self, trace_id: Any, window: Any, tenant: str | None = None) -> Any:
        self.deadlines.append(retry_deadline.get())
        return SourceResult(replace(seed_trace(), trace_id=trace_id.hex))

    async def other_traces(self, service: str, window: Window, exclude_hex: str, depth: int, tenant: str | None) -> Any:
        return [(T0, T0 + MS)]

    async def service_traces(self, service: str, search: Window, depth: int, tenant: str | None) -> SearchAnswer:
        answer = self.searches.get(service, "error")
        if answer == "error":
            raise SourceError("jaeger", "no search")
        return SearchAnswer(search, answer or {}, complete=answer is not None)


class _Loki:
    def __init__(self, lines: int) -> None:
        self.lines = lines

    async def fetch(self, trace_id: Any, window: Window, services: Any, tenant: str | None = None) -> Any:
        return SourceResult((LogLine(f"l-{trace_id.hex}", T0 + MS, "hello", "api-gateway"),))

    async def fetch_untraced(self, window: Window, services: Any, limit: int, tenant: str | None = None) -> Any:
        return SourceResult(())

    async def untraced_answer(self, window: Window, services: Any, limit: int, tenant: str | None) -> LinesAnswer:
        names = ("api-gateway", "auth-service", "course-service", "elsewhere")
        entries = tuple((LogLine(f"u{i}", T0 - 50 * MS + i * MS, f"line {i}", names[i % 4]), i % 5 == 0)
                        for i in range(self.lines))
        return LinesAnswer(window, frozenset(services) if services is not None else None, entries, cut=False)


class _Prometheus:
    def __init__(self) -> None:
        self.deadlines: list[float | None] = []

    async def fetch(self, trace_id: Any, window: Window, tenant: str | None = None) -> Any:
        self.deadlines.append(retry_deadline.get())
        await asyncio.sleep(0)
        return SourceResult((Exemplar(f"e-{trace_id.hex}", "m_bucket", {}, {}, 0.1, T0 + 145 * MS, trace_id.hex),))


def _timeless(outcome: Any) -> Any:
    """An outcome without its timings (each source's ms)."""
    c = outcome.correlation
    return replace(c, sources={name: replace(r, ms=0.0) for name, r in c.sources.items()})


@pytest.mark.parametrize(("searches", "env"), [
    ({}, {}),  # every search failed (known=False): the other traces unknown
    ({"api-gateway": {"t1": ((T0, T0 + 5 * MS),)}, "auth-service": {}, "course-service": {}}, {}),
    ({"api-gateway": {"t1": ((T0, T0 + 5 * MS),)}, "auth-service": None, "course-service": {}}, {}),  # one incomplete
    ({"api-gateway": {}, "auth-service": {}, "course-service": {}}, {"CORRELATOR_JOIN_UNTRACED_OVERLAP_CHECK": "false"}),
    ({"api-gateway": {}, "auth-service": {}, "course-service": {}}, {"CORRELATOR_JOIN_UNTRACED_OVERLAP_MAX_SERVICES": "2"}),
    ({}, {"CORRELATOR_JOIN_UNTRACED": "false"}),
], ids=["searches-failed", "searches-answered", "one-incomplete", "no-overlap-check", "too-many-services", "untraced-off"])
@pytest.mark.parametrize("lines", [0, 40, 700])
async def test_an_untraced_answer_taken_without_waiting_is_the_answer_waited_for(searches: dict[str, Any], env: dict[str, str],
                                                                                 lines: int) -> None:
    """With the shared lookups answered, `_untraced_begin` gives the answer itself and Prometheus runs in the correlation's
    own task (no task, no `_both`): the correlation is the one the waiting path gives, found by the same lookups, and the
    task's retry deadline after Prometheus is the one it had (Jaeger's), as when Prometheus ran in a task of its own."""
    # Prometheus with a deadline of its own: its retry deadline differs from the one Jaeger's left in the task.
    settings = load_settings(environ={"CORRELATOR_CACHE_MAX_ENTRIES": "0", "CORRELATOR_PROMETHEUS_DEADLINE_SECONDS": "3", **env})
    jaeger, prometheus = _Jaeger(searches), _Prometheus()
    c = Correlator(settings, jaeger, _Loki(lines), prometheus, wall_clock=lambda: T0 / 1e9 + 3600)
    first = await c.correlate(parse_trace_id("1" * 32))  # asks the shared lookups
    begun: list[Any] = []
    real_begin = c._untraced_begin

    def begin(*args: Any) -> Any:
        begun.append(real_begin(*args))
        return begun[-1]
    c._untraced_begin = begin  # type: ignore[method-assign,assignment]
    finishing: list[float | None] = []
    real_finish = c._finish

    async def finish(*args: Any, **kwargs: Any) -> Any:
        finishing.append(retry_deadline.get())
        return await real_finish(*args, **kwargs)
    c._finish = finish  # type: ignore[method-assign]
    at_once = await c.correlate(parse_trace_id("2" * 32))
    # Taken without waiting, unless a search left the others unknown to a cut-out (incomplete: asked again on its own).
    assert isinstance(begun[-1], _Untraced) is (None not in searches.values())
    assert finishing[-1] == jaeger.deadlines[-1] != prometheus.deadlines[-1]

    # The same correlation by the waiting path: the shared answers not taken at once.
    c._lines_now = lambda *_a: None  # type: ignore[method-assign]
    c.shared.other_traces_now = lambda *_a: (False, None)  # type: ignore[method-assign]
    waited = await c.correlate(parse_trace_id("2" * 32))
    if "CORRELATOR_JOIN_UNTRACED" not in env:
        assert isinstance(begun[-1], _UntracedPlan)
    assert _timeless(at_once) == _timeless(waited)
    assert at_once.correlation.untraced == first.correlation.untraced
    assert finishing[-1] == jaeger.deadlines[-1]


def test_the_untraced_scope_from_the_services_and_span_already_found_is_the_scope_found_again() -> None:
    """`_correlate` hands the untraced scope the trace's services and span it found (two passes over the spans fewer):
    the scope (services, window, clock estimate) is the one read from the trace itself, for 300 generated traces."""
    import random

    from correlator.model import SourceReport, SourceStatus, Span, Trace

    rng = random.Random(11)
    c = Correlator(load_settings(environ={}), _Jaeger({}), _Loki(0), _Prometheus())
    for n in range(300):
        spans = []
        for i in range(rng.randint(1, 30)):
            start = T0 + rng.randint(-10**9, 10**9)
            parent = None if i == 0 or rng.random() < 0.1 else f"{rng.randrange(i):016x}"
            spans.append(Span(f"{i:016x}", parent, rng.choice(["api", "db", "auth", "b", "a"]), "op", start,
                              start + rng.randint(0, 10**8)))
        trace = Trace(f"{n + 1:032x}", tuple(spans))
        found = (SourceReport(SourceStatus.OK, 1.0), SourceResult(trace))
        known = (sorted({sp.service for sp in trace.spans}), Window(trace.start_ns, trace.end_ns))
        assert c._scope(found, None, known) == c._scope(found, None)
