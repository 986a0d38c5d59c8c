"""Overload protection: at most N backend queries in flight per source per worker.

Why: each `/correlate` of an unknown ID costs three or four backend queries, so a script looping
over random IDs multiplies into Loki load nobody agreed to. A correlation takes its slots from
every backend it is about to ask (all at once, in a fixed order, so two correlations never hold
each other's), waits in a short queue when they are taken, and beyond the queue — or past a short
wait — is refused with `Overloaded`, which the API answers `503` + `Retry-After`. Nothing waits
unboundedly: the queue has a length and a time limit. Cache hits and `/healthz` never get here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Bulkhead", "Overloaded", "admitted"]


class Overloaded(Exception):
    """A backend's slots and its queue are full; the caller should come back after `retry_after` s."""

    def __init__(self, source: str, retry_after: int, why: str) -> None:
        super().__init__(f"{source}: {why}")
        self.source = source
        self.retry_after = retry_after


@dataclass(slots=True)
class _Waiter:
    weight: int
    future: asyncio.Future[None]


class Bulkhead:
    """`limit` slots, a FIFO of at most `queue` waiters, each waiting at most `max_wait` seconds."""

    def __init__(self, source: str, limit: int, queue: int, max_wait: float, retry_after: int = 1) -> None:
        self.source = source
        self.limit = limit
        self.queue = queue
        self.max_wait = max_wait
        self.retry_after = retry_after
        self.in_flight = 0
        self.peak = 0  # highest in_flight seen (bench, tests)
        self.rejected = 0
        self._waiters: deque[_Waiter] = deque()

    def _take(self, weight: int) -> None:
        self.in_flight += weight
        self.peak = max(self.peak, self.in_flight)

    def refuses(self, weight: int = 1) -> bool:
        """Whether `acquire(weight)` would refuse at once (slots and queue full): callers can skip the setup."""
        weight = min(weight, self.limit)
        if not self._waiters and self.in_flight + weight <= self.limit:
            return False
        return len(self._waiters) >= self.queue or self.max_wait <= 0

    def refuse(self) -> Overloaded:
        self.rejected += 1
        return Overloaded(self.source, self.retry_after, f"{self.in_flight} queries in flight, {len(self._waiters)} queued")

    def take_now(self, weight: int = 1) -> bool:
        """`acquire` when it need not wait: the slots taken (True); else nothing done (False), for `acquire` to queue."""
        weight = min(weight, self.limit)  # a request heavier than the cap still gets through alone
        if not self._waiters and self.in_flight + weight <= self.limit:
            self._take(weight)
            return True
        return False

    async def acquire(self, weight: int = 1) -> None:
        if self.take_now(weight):
            return
        weight = min(weight, self.limit)
        if len(self._waiters) >= self.queue or self.max_wait <= 0:
            raise self.refuse()
        waiter = _Waiter(weight, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait):
                await waiter.future
            return
        except TimeoutError:
            self._abandon(waiter)
            self.rejected += 1
        except BaseException:  # cancelled: the request went away while queued
            self._abandon(waiter)
            raise
        # Raised outside the `except`, so it carries no TimeoutError as its context: that one's traceback
        # holds the timeout, the timeout the task, the task this exception — a cycle per refusal that only
        # the cyclic collector frees, and under a flood its young collections stalled every request (bench flood).
        raise Overloaded(self.source, self.retry_after, f"no free slot within {self.max_wait * 1000:.0f} ms")

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.weight)  # granted in the instant it gave up: hand the slots on
            return
        waiter.future.cancel()
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        self._wake()  # a heavy head leaving may let lighter waiters in

    def release(self, weight: int = 1) -> None:
        self.in_flight -= min(weight, self.limit)
        self._wake()

    def _wake(self) -> None:
        # FIFO: the head waits until it fits, so a heavy waiter is not starved by light ones.
        while self._waiters and self.in_flight + self._waiters[0].weight <= self.limit:
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            self._take(waiter.weight)
            waiter.future.set_result(None)


class admitted:  # lower case: used like the function it was, `async with admitted(…)`
    """Hold `weights[name]` slots of each named bulkhead for the block; Overloaded if any is full.

    A class, not an `asynccontextmanager`: no generator and wrapper per use (two to four per correlation; bench P3)."""

    __slots__ = ("_bulkheads", "_taken", "_weights")

    def __init__(self, bulkheads: Mapping[str, Bulkhead], weights: Mapping[str, int]) -> None:
        self._bulkheads, self._weights = bulkheads, weights
        self._taken: list[tuple[Bulkhead, int]] = []

    async def __aenter__(self) -> None:
        weights = self._weights
        try:
            for name in sorted(weights):  # one order everywhere: no two correlations wait on each other
                bulkhead = self._bulkheads.get(name)
                weight = weights[name]
                if bulkhead is None or weight <= 0:
                    continue
                if not bulkhead.take_now(weight):  # free slots (the usual case) taken without a coroutine
                    await bulkhead.acquire(weight)
                self._taken.append((bulkhead, weight))
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._release()

    def _release(self) -> None:
        taken, self._taken = self._taken, []
        for bulkhead, weight in reversed(taken):
            bulkhead.release(weight)
