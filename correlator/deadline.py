"""`async with deadline(seconds):` — `asyncio.timeout(seconds)` without a timer of its own.

Why: under uvloop each `asyncio.timeout` makes and cancels a libuv timer (and closes its handle on the next loop
iteration): ~27 k instructions a use, three per correlation in `Correlator._run`, nearly all of them for correlations
that end long before their deadline (bench P3, docs/performance-p3.md "Session 9: orchestration and serving"). Here
every deadline of a loop waits in one heap under one timer, armed for the earliest deadline still running: a use
pushes an entry (and moves the timer only when it is the new earliest), an exit marks it ended.

The semantics are `asyncio.timeout`'s (CPython 3.11's `Timeout`): at the deadline the task is cancelled; leaving the
block with that cancellation (and no other cancel request since entering) raises `TimeoutError` from it; any other
cancellation passes through untouched. A deadline already past when entered cancels the task on the loop's next
iteration, as `call_soon` would. `tests/test_deadline.py` holds it to `asyncio.timeout` case by case.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType

__all__ = ["deadline"]


class _Entry:
    __slots__ = ("expired", "task", "when")

    def __init__(self, when: float, task: asyncio.Task[object] | None) -> None:
        self.when = when
        self.task = task  # None once the block is left: a finished task is not kept alive by the heap
        self.expired = False


class _Deadlines:
    """One loop's running deadlines: a heap by time and one timer for the earliest (ended entries dropped lazily)."""

    __slots__ = ("_armed", "_handle", "_heap", "_order", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()  # ties: first in, first out
        self._handle: asyncio.Handle | None = None
        self._armed = 0.0

    def add(self, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.when, next(self._order), entry))
        if self._handle is None or entry.when < self._armed:
            self._arm(entry.when)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = when
        if when <= self.loop.time():
            self._handle = self.loop.call_soon(self._fire)
        else:
            self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        # Due: everything up to the time the timer was armed for (the loop judged it due, as it would have judged
        # that entry's own timer), and anything else already past.
        self._handle = None
        heap, due = self._heap, max(self.loop.time(), self._armed)
        while heap and (heap[0][2].task is None or heap[0][0] <= due):
            entry = heapq.heappop(heap)[2]
            task = entry.task
            if task is not None:  # still inside its block: as Timeout._on_timeout
                entry.task = None
                entry.expired = True
                task.cancel()
        if heap:
            self._arm(heap[0][0])


_last: tuple[asyncio.AbstractEventLoop | None, _Deadlines | None] = (None, None)


def _deadlines(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last
    if _last[0] is loop and _last[1] is not None:
        return _last[1]
    found: _Deadlines | None = getattr(loop, "_correlator_deadlines", None)
    if found is None:
        found = _Deadlines(loop)
        try:
            loop._correlator_deadlines = found  # type: ignore[attr-defined]
        except AttributeError:  # a loop without a __dict__ (uvloop's): kept for the last loop only
            pass
    _last = (loop, found)
    return found


class deadline:  # lower case: used like asyncio.timeout
    """`asyncio.timeout(seconds)` for a block that awaits inside the current task."""

    __slots__ = ("_cancelling", "_entry", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __enter__(self) -> None:
        """A plain `with` too: nothing here awaits, so no coroutine per entry and exit (bench P3)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is used inside a task")
        loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self._entry = _Entry(loop.time() + self._seconds, task)
        _deadlines(loop).add(self._entry)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        entry = self._entry
        entry.task = None  # ended: the heap drops it when it comes up
        if entry.expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
