"""Windows around shared work: a caller arriving in the loop turn after a shared correlation ended, before its first
waiter has resumed, must find its answer (correlator/correlate.py's in-flight table and cache); a shared lookup the
table has forgotten while it runs must still end with the service (untraced_share.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from correlator.correlate import Outcome
from correlator.errors import ShuttingDown
from correlator.ids import TraceId
from correlator.model import Trace, Window
from correlator.sources import SourceResult
from correlator.untraced_share import LinesAnswer, SharedLookups
from tests.test_correlate import TID, FakeJaeger, make
from tests.test_join import seed_trace
from tests.test_untraced_share import T0, S


def arrive_now(call: Coroutine[Any, Any, Outcome]) -> Outcome | None:
    """Run a caller's first step right here, as a request handler whose step comes in this loop turn: its answer
    when it needs no waiting (a cache hit), else None (it went on to ask the backends; its task keeps running)."""
    try:
        call.send(None)
    except StopIteration as answered:
        return answered.value  # type: ignore[no-any-return]
    call.close()  # what it started runs on as its own (shared) task
    return None


async def test_a_caller_in_the_turn_after_a_shared_correlation_ends_is_answered_from_the_cache() -> None:
    """The in-flight entry is forgotten by a callback one loop turn after the correlation ends; its waiters put the
    answer in the cache a turn later still. A request in between found neither and correlated the trace again
    (three or four backend queries) — the window a dashboard's burst of identical requests falls into."""
    jaeger = FakeJaeger(seed_trace(), delay=0.01)
    c = make(jaeger=jaeger)
    first = asyncio.ensure_future(c.correlate(TID))
    while not c._inflight:
        await asyncio.sleep(0)
    shared = next(iter(c._inflight.values()))
    late: list[Outcome | None] = []

    def arrive(_done: object) -> None:
        # Registered after the callback that forgets the entry: runs right after it, before the first caller resumes.
        assert shared not in c._inflight.values() and not first.done(), "not in the window"
        late.append(arrive_now(c.correlate(TID)))

    shared.add_done_callback(arrive)
    answer = await first
    assert late, "the window was not reached"
    for _ in range(20):  # anything the late caller started has run by now
        await asyncio.sleep(0.01)
    assert late[0] is not None and late[0].cached and late[0].correlation == answer.correlation
    assert len(jaeger.calls) == 1


async def test_closing_ends_a_shared_untraced_lookup_that_outlived_its_sharing_time() -> None:
    """A shared lookup is shared for `join.untraced_share_seconds` (2 s) but may run up to Loki's deadline (10 s): past
    the first, the table forgets it while it runs. `aclose` must still end it — none may outlive the service's
    clients (it would talk to a closed one) — as it ends those still in the table."""
    ended: list[str] = []

    async def lines(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("lines")  # where a real query releases its connection
        raise AssertionError("unreachable")

    clock = [0.0]
    shared = SharedLookups(2.0, clock=lambda: clock[0])
    shared.prefetch_lines(lines, Window(T0, T0 + S), None, None)
    await asyncio.sleep(0)
    clock[0] = 2.5  # past its sharing time, still running: the next look at the table forgets it
    assert shared.lines_now(["api"], Window(T0, T0 + S), 10, None) is None
    await shared.aclose()
    assert ended == ["lines"]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def _arrive_when_it_ends(shared: asyncio.Future[Outcome], inflight: dict[Any, asyncio.Future[Outcome]],
                               call: Coroutine[Any, Any, Outcome]) -> Outcome:
    """A request whose step comes in the loop turn in which `shared` has ended but its in-flight entry is not forgotten
    yet (the callback that pops it runs a turn later): polling one step a turn lands there, whichever runs first."""
    while not shared.done():
        await asyncio.sleep(0)
    assert shared in inflight.values(), "not in the window: the in-flight entry was forgotten already"
    return await call


async def test_a_caller_in_the_turn_after_closing_cancelled_a_shared_correlation_is_refused_not_cancelled() -> None:
    """`aclose` cancels the correlations in flight; a request arriving after that one ended, before its entry was
    forgotten, awaited the cancelled task: a CancelledError raised into a task nobody cancelled (its request dropped
    without an answer). It gets the refusal a shutting-down service gives (ShuttingDown: a 503 over HTTP)."""
    jaeger = FakeJaeger(seed_trace(), delay=3600)
    c = make(jaeger=jaeger)
    first = asyncio.ensure_future(c.correlate(TID))
    while not jaeger.calls:  # the shared correlation is asking Jaeger
        await asyncio.sleep(0)
    late = asyncio.ensure_future(_arrive_when_it_ends(next(iter(c._inflight.values())), c._inflight, c.correlate(TID)))
    await c.aclose()
    await asyncio.wait([first, late])
    assert not late.cancelled() and isinstance(late.exception(), ShuttingDown)
    assert not first.cancelled() and isinstance(first.exception(), ShuttingDown)
    assert len(jaeger.calls) == 1


async def test_closing_refuses_the_waiters_of_a_correlation_it_ended_and_every_later_caller() -> None:
    """A caller waiting on a shared correlation that `aclose` ends was not cancelled itself: it is told the service is
    shutting down, not cancelled. A caller after `aclose` starts nothing (the backend clients close next)."""
    jaeger = FakeJaeger(seed_trace(), delay=3600)
    c = make(jaeger=jaeger)
    waiters = [asyncio.ensure_future(c.correlate(TID)) for _ in range(2)]
    while not jaeger.calls:
        await asyncio.sleep(0)
    await c.aclose()
    await asyncio.wait(waiters)
    assert [type(w.exception()) for w in waiters if not w.cancelled()] == [ShuttingDown, ShuttingDown]
    with pytest.raises(ShuttingDown):
        async with asyncio.timeout(1):
            await c.correlate(TID)
    assert len(jaeger.calls) == 1 and c._inflight == {}


async def test_a_caller_in_the_turn_after_a_shared_correlation_was_cancelled_correlates_afresh() -> None:
    """A shared correlation can end cancelled with the correlator open (its own code raising CancelledError): a request
    in the turn before its entry is forgotten never shared it and must not be cancelled by it — it asks again. The
    ended one's forget callback, a turn later, must leave that new correlation's entry alone: a request meanwhile shares
    it instead of asking the backends a third time."""
    go = asyncio.Event()

    class CancelledOnce(FakeJaeger):
        async def fetch(self, trace_id: TraceId, window: Window | None, tenant: str | None = None) -> SourceResult[Trace | None]:
            if not self.calls:
                self.calls.append(window)
                await go.wait()
                raise asyncio.CancelledError
            return await super().fetch(trace_id, window, tenant)

    jaeger = CancelledOnce(seed_trace(), delay=0.05)
    c = make(jaeger=jaeger)
    first = asyncio.ensure_future(c.correlate(TID))
    while not jaeger.calls:
        await asyncio.sleep(0)
    late = asyncio.ensure_future(_arrive_when_it_ends(next(iter(c._inflight.values())), c._inflight, c.correlate(TID)))
    go.set()
    while len(jaeger.calls) < 2:  # the late caller's own correlation is asking Jaeger
        await asyncio.sleep(0)
    another = asyncio.ensure_future(c.correlate(TID))  # the ended one's forget callback has run by now
    await asyncio.wait([first, late, another])
    assert first.cancelled()  # the one that shared the attempt gets its end
    assert not late.cancelled() and late.result().correlation.trace is not None
    assert len(jaeger.calls) == 2 and another.result().correlation is late.result().correlation  # shared, not asked again
