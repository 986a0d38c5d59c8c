"""Answers shared between concurrent callers for a few seconds (correlator/single_flight.py)."""

from __future__ import annotations

import asyncio

import pytest

from correlator.single_flight import SingleFlight


class Backend:
    """Counts the queries really made; each answers when released."""

    def __init__(self) -> None:
        self.asked = 0
        self.release = asyncio.Event()
        self.fail = False

    async def query(self) -> str:
        self.asked += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("backend down")
        return f"answer {self.asked}"


async def test_concurrent_callers_of_one_key_share_one_query_and_others_ask_their_own() -> None:
    backend, now = Backend(), [0.0]
    shared: SingleFlight[str] = SingleFlight(2.0, clock=lambda: now[0])
    waiting = [asyncio.ensure_future(shared.get(key, backend.query)) for key in ("a", "a", "a", "b")]
    await asyncio.sleep(0)
    backend.release.set()
    assert await asyncio.gather(*waiting) == ["answer 1", "answer 1", "answer 1", "answer 2"]
    assert backend.asked == 2
    now[0] = 1.9  # still kept
    assert await shared.get("a", backend.query) == "answer 1" and backend.asked == 2
    now[0] = 2.1  # expired: asked again
    assert await shared.get("a", backend.query) == "answer 3" and backend.asked == 3


async def test_a_failure_reaches_its_waiters_and_is_not_kept() -> None:
    backend = Backend()
    backend.fail = True
    shared: SingleFlight[str] = SingleFlight(2.0)
    waiting = [asyncio.ensure_future(shared.get("a", backend.query)) for _ in range(3)]
    await asyncio.sleep(0)
    backend.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and backend.asked == 1
    backend.fail = False
    assert await shared.get("a", backend.query) == "answer 2"  # the next caller asks again


async def test_a_waiter_that_gives_up_leaves_the_query_to_the_others() -> None:
    backend = Backend()
    shared: SingleFlight[str] = SingleFlight(2.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await shared.get("a", backend.query)  # the first caller, whose deadline passes
    other = asyncio.ensure_future(shared.get("a", backend.query))
    await asyncio.sleep(0)
    backend.release.set()
    assert await other == "answer 1" and backend.asked == 1


async def test_off_asks_every_time_and_the_table_stays_bounded() -> None:
    backend = Backend()
    backend.release.set()
    off: SingleFlight[str] = SingleFlight(0.0)
    assert [await off.get("a", backend.query) for _ in range(2)] == ["answer 1", "answer 2"]
    small: SingleFlight[str] = SingleFlight(60.0, max_entries=4)
    for key in range(10):
        await small.get(key, backend.query)
    assert len(small._entries) <= 4
    assert await small.get(9, backend.query) == "answer 12"  # the newest are the ones kept


async def test_closing_ends_the_query_a_waiter_left_running_and_keeps_nothing() -> None:
    backend = Backend()
    shared: SingleFlight[str] = SingleFlight(2.0)
    ended = asyncio.Event()

    async def query() -> str:
        try:
            return await backend.query()
        finally:
            ended.set()  # where a real query releases its connection

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await shared.get("a", query)  # gives up: the shared query goes on for the others
    assert not ended.is_set()
    await shared.aclose()
    assert ended.is_set() and shared._entries == {}
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_now_gives_what_get_would_give_without_waiting_and_nothing_else() -> None:
    backend, clock = Backend(), [0.0]
    shared: SingleFlight[str] = SingleFlight(2.0, clock=lambda: clock[0])
    assert shared.now("a") == (False, None)  # never asked
    waiting = asyncio.ensure_future(shared.get("a", backend.query))
    await asyncio.sleep(0)
    assert shared.now("a") == (False, None)  # in flight: get would wait
    backend.release.set()
    assert await waiting == "answer 1"
    clock[0] = 1.9
    assert shared.now("a") == (True, "answer 1") and await shared.get("a", backend.query) == "answer 1"
    clock[0] = 2.1
    assert shared.now("a") == (False, None)  # expired: get would ask again
    backend.fail, backend.release = True, asyncio.Event()
    failing = asyncio.ensure_future(shared.get("b", backend.query))
    await asyncio.sleep(0)
    backend.release.set()
    with pytest.raises(RuntimeError):
        await failing
    assert shared.now("b") == (False, None)  # a failure is not kept
    assert SingleFlight[str](0.0).now("a") == (False, None)  # off: every get asks


async def test_now_never_raises_a_failure_its_callback_has_not_forgotten_yet() -> None:
    """Between a shared query failing and its forget callback running (a loop turn later), `now` must not raise the
    failure into the caller's own code: a standing lookup raised it there, outside its error handling (a 500)."""
    shared: SingleFlight[str] = SingleFlight(2.0, clock=lambda: 0.0)
    failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    failed.set_exception(RuntimeError("prometheus: not a vector answer"))
    cancelled: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    cancelled.cancel()
    shared._entries["failed"], shared._entries["cancelled"] = (1.0, failed), (1.0, cancelled)
    assert shared.now("failed") == (False, None) and shared.now("cancelled") == (False, None)
    # … and `get` asks again: the caller never shared that attempt (test_a_caller_in_the_turn_after_a_failure_…).
    assert await shared.get("failed", lambda: asyncio.sleep(0, "asked again")) == "asked again"
    assert await shared.get("cancelled", lambda: asyncio.sleep(0, "asked again")) == "asked again"


async def _late_caller_in_the_failure_turn(outcome: BaseException) -> tuple[asyncio.Task[str], int]:
    """A caller that arrives in the very loop turn in which the shared query ends with `outcome` — after it ended,
    before its forget callback runs (a loop turn later) — driven deterministically: both wait on one event, the
    query first, so the event wakes them in that order within one turn. Returns the caller's task and how many
    queries were made."""
    shared: SingleFlight[str] = SingleFlight(2.0, clock=lambda: 0.0)
    go, asked = asyncio.Event(), [0]

    async def query() -> str:
        asked[0] += 1
        if asked[0] == 1:
            await go.wait()
            raise outcome
        return f"answer {asked[0]}"

    first = asyncio.ensure_future(shared.get("a", query))
    while asked[0] == 0:  # the caller's task starts the query's task, which then waits on `go`, first in line
        await asyncio.sleep(0)

    async def late() -> str:
        await go.wait()  # woken in the same turn as the query, just after it
        shared_query = shared._entries["a"][1]
        assert shared_query.done() and (shared_query.cancelled() or shared_query.exception() is not None), \
            "not in the window: the shared query had not ended yet"  # the window the test is about
        return await shared.get("a", query)

    caller = asyncio.ensure_future(late())
    await asyncio.sleep(0)
    go.set()
    await asyncio.wait([first, caller])
    if isinstance(outcome, asyncio.CancelledError):
        assert first.cancelled()  # the one that shared the attempt gets its end
    else:
        assert isinstance(first.exception(), type(outcome))
    return caller, asked[0]


async def test_a_caller_in_the_turn_after_a_failure_asks_again_instead_of_taking_a_failure_it_never_shared() -> None:
    caller, asked = await _late_caller_in_the_failure_turn(RuntimeError("prometheus: 503"))
    assert caller.result() == "answer 2" and asked == 2


async def test_a_caller_in_the_turn_after_a_cancelled_query_is_not_cancelled_itself() -> None:
    """A cancelled shared query (its task cancelled, or its own code raising CancelledError) must not raise
    CancelledError into a task nobody cancelled: that task would end as cancelled, its request silently dropped."""
    caller, asked = await _late_caller_in_the_failure_turn(asyncio.CancelledError())
    assert not caller.cancelled() and caller.result() == "answer 2" and asked == 2


async def test_closing_ends_queries_in_flight_even_those_the_bounded_table_let_go() -> None:
    """More keys in flight than the table holds: the oldest entries are dropped from the table, but their queries run
    on (their callers wait on them) and `aclose` must still end them: none outlives its owner (and its client)."""
    backend = Backend()  # never released: every query stays in flight
    shared: SingleFlight[str] = SingleFlight(60.0, max_entries=2)
    callers = [asyncio.ensure_future(shared.get(key, backend.query)) for key in range(5)]
    while backend.asked < 5:
        await asyncio.sleep(0)
    assert len(shared._entries) <= 2
    await shared.aclose()
    await asyncio.wait(callers, timeout=10)  # returns when they are done: the bound is only against a hang
    assert all(caller.done() for caller in callers)  # each got its query's end (cancelled), none waits for ever
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
