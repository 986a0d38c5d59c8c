"""Investigations (correlator/many.py, `/investigate`) during shutdown and around shared work that ended badly: `aclose`
ends a batch still running — none of its queries outlives the backend clients — and its callers are told the service
is shutting down; an in-flight entry that ended badly is neither taken as this caller's failure nor, once replaced, has
its replacement forgotten by its own cleanup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

import httpx
import pytest

from correlator.api import BACKENDS, create_app
from correlator.config import load_settings
from correlator.correlate import Correlator, Outcome
from correlator.errors import ShuttingDown
from correlator.ids import TraceId
from correlator.many import correlate_many
from correlator.model import Exemplar, LogLine, Trace, Window
from correlator.sources import SourceResult
from tests.apiclient import Backends
from tests.mcpclient import TOKEN, http_client, text_of
from tests.test_many import IDS, NOW, Jaeger, Loki, Prometheus, make, wanted

T = TypeVar("T")
PARAMS = {"query": "http_server_duration_seconds_bucket", "start": "1795572400", "end": "1795572600"}


async def released(ended: list[str], what: str) -> None:
    """Where a real query gives its connection back: that takes loop turns too (an awaited close)."""
    await asyncio.sleep(0.01)
    ended.append(what)


class StuckPrometheus(Prometheus):
    def __init__(self) -> None:
        super().__init__()
        self.ended: list[str] = []

    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[Exemplar, ...]]]:
        self.calls += 1
        try:
            await asyncio.sleep(3600)
        finally:
            await released(self.ended, "exemplars")
        raise AssertionError("unreachable")


class StuckLoki(Loki):
    """Answers nothing: its lines of the traces and its lines without a trace ID both hang."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[str] = []

    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window, services: Sequence[str] | None,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[LogLine, ...]]]:
        self.many.append((tuple(t.hex for t in trace_ids), tuple(services) if services else None))
        try:
            await asyncio.sleep(3600)
        finally:
            await released(self.ended, "lines")
        raise AssertionError("unreachable")

    async def fetch_untraced(self, window: Window, services: Sequence[str], limit: int,
                             tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
        self.single.append("untraced")
        try:
            await asyncio.sleep(3600)
        finally:
            await released(self.ended, "untraced")
        raise AssertionError("unreachable")


async def arrive_when_it_ends(shared: asyncio.Future[Outcome], inflight: dict[Any, asyncio.Future[Outcome]],
                              call: Coroutine[Any, Any, T]) -> T:
    """A caller whose step comes in the loop turn in which `shared` has ended but its in-flight entry is not forgotten
    yet (the callback that pops it runs a turn later): polling one step a turn lands there, whichever runs first."""
    while not shared.done():
        await asyncio.sleep(0)
    assert shared in inflight.values(), "not in the window: the in-flight entry was forgotten already"
    return await call


def others() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.fixture(autouse=True)
async def _nothing_left_running() -> AsyncIterator[None]:
    """Without the fixes a test leaves an hour-long query behind: ended here, so it fails alone, not the next test."""
    yield
    left = others()
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


async def test_closing_ends_a_running_investigation_and_its_callers_are_told_the_service_is_shutting_down() -> None:
    """`aclose` cancelled the investigation's per-trace futures (plain ones) but not the batch behind them: its Jaeger
    fetches and exemplar query ran on against clients closed next, and its caller waited on. Now the batch is ended
    before `aclose` returns, and its caller — and a /correlate sharing one of its traces — get ShuttingDown."""
    jaeger = Jaeger(stuck=[t.hex for t in IDS])
    prom = StuckPrometheus()
    c = Correlator(load_settings(environ={}), jaeger, Loki(jaeger), prom, wall_clock=lambda: NOW)
    investigation = asyncio.ensure_future(correlate_many(c, wanted(IDS[:3]), None, deadline=time.monotonic() + 60,
                                                         concurrency=3))
    while len(jaeger.calls) < 3 or not prom.calls:
        await asyncio.sleep(0)
    sharing = asyncio.ensure_future(c.correlate(IDS[0]))
    await asyncio.sleep(0.01)
    await c.aclose()
    assert jaeger.active == 0 and prom.ended == ["exemplars"]  # ended before the clients close
    await asyncio.wait([investigation, sharing], timeout=10)  # returns when they are done: the bound is only against a hang
    assert not investigation.cancelled() and isinstance(investigation.exception(), ShuttingDown)
    assert not sharing.cancelled() and isinstance(sharing.exception(), ShuttingDown)
    assert others() == [] and c._inflight == {} and len(jaeger.calls) == 3


async def test_closing_ends_a_batch_waiting_on_loki_with_its_lookups_of_lines_without_a_trace_id() -> None:
    """Ended in its Loki round, the batch left its lookups of untraced lines (a task beside it) running on."""
    jaeger = Jaeger(delay=0)
    loki = StuckLoki()
    settings = load_settings(environ={"CORRELATOR_JOIN_UNTRACED_OVERLAP_CHECK": "false"})
    c = Correlator(settings, jaeger, loki, Prometheus(), wall_clock=lambda: NOW)
    investigation = asyncio.ensure_future(correlate_many(c, wanted(IDS[:2]), None, deadline=time.monotonic() + 60,
                                                         concurrency=2))
    while not loki.many or "untraced" not in loki.single:
        await asyncio.sleep(0)
    await c.aclose()
    assert sorted(set(loki.ended)) == ["lines", "untraced"] and len(loki.ended) == len(loki.many) + len(loki.single)
    await asyncio.wait([investigation], timeout=10)  # returns when they are done: the bound is only against a hang
    assert isinstance(investigation.exception(), ShuttingDown) and others() == []


async def test_an_investigation_waiting_on_a_correlation_the_shutdown_ends_is_refused_not_given_a_partial_answer() -> None:
    """Its trace was being correlated by a /correlate: `aclose` ended that one, and the investigation reported the trace
    as 'failed' in a 200 answer — a backend failure it was not. It is told the service is shutting down, as that
    /correlate's caller is."""
    jaeger = Jaeger(stuck=[IDS[0].hex])
    c, _loki, _prom = make(jaeger)
    correlation = asyncio.ensure_future(c.correlate(IDS[0]))
    while not jaeger.calls:
        await asyncio.sleep(0)
    investigation = asyncio.ensure_future(correlate_many(c, wanted(IDS[:1]), None, deadline=time.monotonic() + 60,
                                                         concurrency=1))
    await asyncio.sleep(0.01)
    await c.aclose()
    await asyncio.wait([investigation, correlation], timeout=10)  # returns when they are done: the bound is only against a hang
    assert isinstance(correlation.exception(), ShuttingDown)
    assert not investigation.cancelled() and isinstance(investigation.exception(), ShuttingDown)
    assert jaeger.calls == [IDS[0].hex]


async def test_an_investigation_after_closing_is_refused_without_asking_any_backend() -> None:
    jaeger = Jaeger()
    c, loki, prom = make(jaeger)
    await c.aclose()
    with pytest.raises(ShuttingDown):
        await correlate_many(c, wanted(IDS[:2]), None, deadline=time.monotonic() + 5, concurrency=2)
    assert jaeger.calls == [] and loki.many == [] and prom.calls == 0 and c._inflight == {}


class CancelledOnce(Jaeger):
    """Its first fetch ends cancelled (its own code raising CancelledError) once `go` is set; later ones answer."""

    def __init__(self) -> None:
        super().__init__(delay=0.05)
        self.go = asyncio.Event()

    async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None) -> SourceResult[Trace | None]:
        if not self.calls:
            self.calls.append(trace_id.hex)
            await self.go.wait()
            raise asyncio.CancelledError
        return await super().fetch(trace_id, window, tenant)


async def test_an_investigation_in_the_turn_after_a_shared_correlation_was_cancelled_reads_the_trace_itself() -> None:
    """A /correlate ended cancelled with the correlator open; an investigation arriving before its in-flight entry is
    forgotten (a turn later) took that end for its own: the trace 'failed' though nothing it asked for did."""
    jaeger = CancelledOnce()
    c, _loki, _prom = make(jaeger)
    first = asyncio.ensure_future(c.correlate(IDS[0]))
    while not jaeger.calls:
        await asyncio.sleep(0)
    late = asyncio.ensure_future(arrive_when_it_ends(
        next(iter(c._inflight.values())), c._inflight,
        correlate_many(c, wanted(IDS[:1]), None, deadline=time.monotonic() + 5, concurrency=1)))
    jaeger.go.set()
    await asyncio.wait([first, late])
    assert first.cancelled()  # the one that shared the attempt gets its end
    outcomes, failed = late.result()
    assert failed == {} and outcomes[IDS[0].hex].correlation.trace is not None and len(jaeger.calls) == 2


async def test_a_batch_entry_that_ended_badly_leaves_its_replacement_in_flight() -> None:
    """An investigation's entry ended cancelled; a /correlate in the turn before the entry's cleanup callback correlates
    afresh in its place. That callback popped whatever was under the key — the replacement — so the next identical
    request found nothing in flight and asked Jaeger a third time. It forgets its own entry only."""
    jaeger = CancelledOnce()
    c, _loki, _prom = make(jaeger)
    investigation = asyncio.ensure_future(correlate_many(c, wanted(IDS[:1]), None, deadline=time.monotonic() + 5,
                                                         concurrency=1))
    while not jaeger.calls:
        await asyncio.sleep(0)
    late = asyncio.ensure_future(arrive_when_it_ends(next(iter(c._inflight.values())), c._inflight, c.correlate(IDS[0])))
    jaeger.go.set()
    while len(jaeger.calls) < 2:  # the late caller's own correlation is asking Jaeger
        await asyncio.sleep(0)
    another = asyncio.ensure_future(c.correlate(IDS[0]))  # the ended entry's cleanup callback has run by now
    await asyncio.wait([investigation, late, another])
    assert investigation.cancelled()  # the batch's own end (not a shutdown): its caller gets it
    assert not late.cancelled() and late.result().correlation.trace is not None
    assert len(jaeger.calls) == 2 and another.result().correlation is late.result().correlation  # shared, not asked again


def stuck_jaeger(started: list[str], ended: list[str]) -> httpx.MockTransport:
    """Jaeger over the service's real httpx client, never answering."""
    async def answer(request: httpx.Request) -> httpx.Response:
        started.append(request.url.path)
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append(request.url.path)
        raise AssertionError("unreachable")
    return httpx.MockTransport(answer)


async def test_an_investigation_the_shutdown_ends_gets_503_problem_json_and_a_later_one_asks_nothing(aiohttp_client: Any) -> None:
    """Over HTTP: the request waiting on a batch `aclose` ends is answered 503 Shutting down + Retry-After (before, it
    waited on for Jaeger's answer through a closed client); the investigation's Jaeger request has ended by then; an
    investigation asked for afterwards is refused before its exemplar query."""
    backends, started, ended = Backends(), list[str](), list[str]()
    settings = load_settings(environ={"CORRELATOR_SERVER_OFFLOAD_BYTES": "0"})
    client = await aiohttp_client(create_app(settings, {**backends.transports(), "jaeger": stuck_jaeger(started, ended)}))
    waiting = asyncio.ensure_future(client.get("/investigate", params=PARAMS))
    while not started:  # its batch is asking Jaeger for the trace
        await asyncio.sleep(0.01)
    await client.app[BACKENDS].correlator.aclose()
    assert ended == started  # that request ended before the clients close
    async with asyncio.timeout(5):
        refused = await waiting
    assert refused.status == 503 and refused.headers["Retry-After"] == str(settings.server.retry_after_seconds)
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert (await refused.json(content_type=None))["title"] == "Shutting down"
    asked = len(backends.requests)
    later = await client.get("/investigate", params=PARAMS)
    assert later.status == 503 and (await later.json(content_type=None))["title"] == "Shutting down"
    assert len(backends.requests) == asked  # not even the exemplar query


async def test_the_mcp_investigate_tool_after_closing_is_a_tool_error_saying_so(aiohttp_server: Any) -> None:
    backends = Backends()
    settings = load_settings(environ={"CORRELATOR_SERVER_OFFLOAD_BYTES": "0", "CORRELATOR_SERVER_AUTH_TOKEN": TOKEN})
    service = await aiohttp_server(create_app(settings, backends.transports()))
    await service.app[BACKENDS].correlator.aclose()
    async with http_client(service) as client:
        result = await client.call_tool("investigate", {"query": PARAMS["query"], "start": PARAMS["start"],
                                                        "end": PARAMS["end"]})
    assert result.is_error and "shutting down" in text_of(result)
    assert backends.requests == []  # not even the exemplar query
