"""`correlator.deadline.deadline` behaves as `asyncio.timeout` (CPython 3.11's), case by case, with the loop's real time."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from correlator.deadline import deadline


class _Plain:
    """`deadline` as a plain `with` (how Correlator._run uses it), behind the async protocol the tests speak."""

    def __init__(self, seconds: float) -> None:
        self._inner = deadline(seconds)

    async def __aenter__(self) -> None:
        self._inner.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)


KINDS: dict[str, Callable[[float], Any]] = {"asyncio.timeout": asyncio.timeout, "deadline": deadline, "with deadline": _Plain}


async def _outcome(kind: str, seconds: float, body: Callable[[], Any]) -> tuple[str, int]:
    """What leaving the block gives (a value, TimeoutError or CancelledError) and the task's cancel requests after."""
    task = asyncio.current_task()
    assert task is not None
    try:
        async with KINDS[kind](seconds):
            result = f"value {await body()}"
    except TimeoutError:
        result = "TimeoutError"
    return result, task.cancelling()


async def _sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def _swallow(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        return "swallowed"
    return "slept"


@pytest.mark.parametrize(("seconds", "body"), [
    (0.2, lambda: _sleep(0)), (0.2, lambda: _sleep(0.01)),  # in time
    (0.02, lambda: _sleep(0.5)), (0.0, lambda: _sleep(0.5)), (-1.0, lambda: _sleep(0.5)),  # past its deadline, or no time
    (0.02, lambda: _swallow(0.5)),  # the body takes the cancellation and answers
])
async def test_one_block_ends_as_asyncio_timeout_ends(seconds: float, body: Callable[[], Any]) -> None:
    expected = await _outcome("asyncio.timeout", seconds, body)
    assert await _outcome("deadline", seconds, body) == expected
    assert await _outcome("with deadline", seconds, body) == expected


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_cancellation_from_outside_passes_through(kind: str) -> None:
    async def inside() -> None:
        async with KINDS[kind](5):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(inside())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("kind", list(KINDS))
async def test_an_outer_cancel_after_the_deadline_fired_stays_a_cancellation(kind: str) -> None:
    async def inside() -> None:
        async with KINDS[kind](0.01):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                asyncio.current_task().cancel()  # type: ignore[union-attr]  # someone else asks too, meanwhile
                raise

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(inside())


async def test_many_blocks_in_any_order_each_end_at_their_own_deadline() -> None:
    rng = random.Random(11)
    plans = [(rng.choice([0.005, 0.02, 0.05, 0.3]), rng.choice([0.0, 0.01, 0.1, 0.6])) for _ in range(60)]

    async def one(kind: str, seconds: float, sleep: float) -> tuple[str, bool]:
        started = time.monotonic()
        result, cancelling = await _outcome(kind, seconds, lambda: _sleep(sleep))
        assert cancelling == 0
        if result == "TimeoutError":
            assert time.monotonic() - started >= seconds - 0.002  # never before the deadline (the loop's ms timers)
        return result, True

    for kind in KINDS:
        results = await asyncio.gather(*(one(kind, seconds, sleep) for seconds, sleep in plans))
        # Far from the edge (×3 apart or more), the outcome is certain: a sleep past the deadline times out.
        for (seconds, sleep), (result, _) in zip(plans, results, strict=True):
            if sleep >= 3 * seconds:
                assert result == "TimeoutError", (kind, seconds, sleep)
            elif seconds >= 3 * sleep:
                assert result == "value slept", (kind, seconds, sleep)


@pytest.mark.parametrize(("outer", "inner"), [("deadline", "asyncio.timeout"), ("asyncio.timeout", "deadline"),
                                              ("deadline", "deadline")])
async def test_nested_the_one_that_expires_raises(outer: str, inner: str) -> None:
    async def run(outer_s: float, inner_s: float) -> str:
        try:
            async with KINDS[outer](outer_s):
                try:
                    async with KINDS[inner](inner_s):
                        await asyncio.sleep(1)
                except TimeoutError:
                    return "inner"
        except TimeoutError:
            return "outer"
        return "none"

    assert await run(5, 0.01) == "inner"
    assert await run(0.01, 5) == "outer"


async def test_a_finished_block_holds_no_task() -> None:
    async def inside() -> str:
        async with deadline(30):
            return "done"

    task = asyncio.ensure_future(inside())
    assert await task == "done"
    from correlator import deadline as module

    held = [entry.task for _when, _n, entry in module._deadlines(asyncio.get_running_loop())._heap]
    assert task not in held


def test_under_uvloop_as_served() -> None:
    """The service runs on uvloop (its timers have millisecond resolution): the same outcomes there."""
    uvloop = pytest.importorskip("uvloop")

    async def checks() -> None:
        for seconds, body in ((0.2, lambda: _sleep(0.01)), (0.02, lambda: _sleep(0.5)), (0.0, lambda: _sleep(0.5)),
                              (0.02, lambda: _swallow(0.5))):
            expected = await _outcome("asyncio.timeout", seconds, body)
            assert await _outcome("deadline", seconds, body) == await _outcome("with deadline", seconds, body) == expected
        await test_many_blocks_in_any_order_each_end_at_their_own_deadline()
        await test_a_cancellation_from_outside_passes_through("with deadline")
        await test_nested_the_one_that_expires_raises("deadline", "asyncio.timeout")

    uvloop.run(checks())
