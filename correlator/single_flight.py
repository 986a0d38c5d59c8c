"""Answers shared between concurrent callers for a few seconds: one query per key in flight, its answer
kept `ttl_seconds` for whoever asks the same meanwhile (single flight + a short TTL).

A failed (or cancelled) query is never kept: its waiters get its error, the next caller asks again — also one
that comes in the loop turn between the failure and the callback that forgets it. A waiter that
gives up (its own deadline, a client gone) leaves the query running for the others (it is shielded).
Used where the same backend question comes from many correlations within a second (standing_run.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "cancelling_itself"]

T = TypeVar("T")


def cancelling_itself() -> bool:
    """Whether the running task is being cancelled itself (its canceller, a timeout, a client gone). A waiter on a shared
    answer cancelled in the turn the answer is cancelled too sees one CancelledError: this tells whose it is."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class SingleFlight(Generic[T]):
    def __init__(self, ttl_seconds: float, max_entries: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self.clock = ttl_seconds, max_entries, clock
        self._entries: dict[Hashable, tuple[float, asyncio.Future[T]]] = {}
        # Every query running, in the table or not (the bounded table may drop one still in flight): `aclose` ends them all.
        self._running: set[asyncio.Future[T]] = set()

    def now(self, key: Hashable) -> tuple[bool, T | None]:
        """(True, the answer) when `get(key, …)` would give a kept answer without waiting, else (False, None):
        a caller can skip its own timeout and coroutine then (bench P3)."""
        if self.ttl <= 0:
            return False, None
        kept = self._entries.get(key)
        if kept is not None and kept[0] > self.clock() and kept[1].done():
            answer = kept[1]
            # A failure is forgotten by a callback that runs a loop turn later: until then it is not an answer
            # to take here (the caller's `get` reports it where its errors are handled).
            if not answer.cancelled() and answer.exception() is None:
                return True, answer.result()
        return False, None

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        """The answer to `key`: the one in flight or kept, else `fetch()`'s (started here, shared)."""
        if self.ttl <= 0:
            return await fetch()
        now = self.clock()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            shared = kept[1]
            if not shared.done():
                return await asyncio.shield(shared)
            if not shared.cancelled() and shared.exception() is None:  # the usual case under load: answered, no waiting
                return shared.result()
            # Failed or cancelled, its forget callback not run yet (a loop turn later): this caller never shared that
            # attempt, so it is not its failure (nor a CancelledError raised into a task nobody cancelled): ask again.
        answer: asyncio.Future[T] = asyncio.ensure_future(fetch())
        self._entries[key] = (now + self.ttl, answer)
        self._running.add(answer)
        answer.add_done_callback(self._running.discard)
        if len(self._entries) > self.max_entries:
            self._prune(now)

        def forget_failure(done: asyncio.Future[T]) -> None:
            current = self._entries.get(key)
            if (done.cancelled() or done.exception() is not None) and current is not None and current[1] is done:
                del self._entries[key]
        answer.add_done_callback(forget_failure)  # also retrieves the exception: never "never retrieved"
        return await asyncio.shield(answer)

    async def aclose(self) -> None:
        """Cancel the queries still in flight and wait until they have ended: none outlives its owner."""
        running = [answer for answer in self._running if not answer.done()]
        self._entries, self._running = {}, set()
        for answer in running:
            answer.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _prune(self, now: float) -> None:
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        while len(self._entries) > self.max_entries:  # all fresh: drop the oldest (dicts keep insertion order)
            del self._entries[next(iter(self._entries))]
