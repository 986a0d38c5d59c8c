"""One CPU-heavy step per event-loop turn, so cheap requests are answered between them.

Why: a worker's one event loop runs, in each turn, every callback that became ready in the turn
before. Under load that is many correlations' parse, assembly and render steps back to back (1-5 ms
each for a small trace), and a cache hit or a `/healthz` that arrived meanwhile waits for all of
them: in bench `flood`, cache hits' p99 went 25 → 48 ms and more while 160 correlations/s ran. A
step that first awaits `my_turn()` runs alone in its turn; the turn after it polls the sockets
again, so cheap requests (never gated) get in between. FIFO: steps run in the order they asked.

The step is the synchronous code between `await my_turn()` and the task's next `await`. Backend
answers are parsed in the step that `sources._http.get` ends with; the assembly and the render take
their own turn. A bulkhead slot is held until its answer is parsed, so when the CPU is the limit
the bulkhead's queue fills and a flood is refused sooner, instead of piling up work in the loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

__all__ = ["Turns", "my_turn"]


class Turns:
    """Hands out at most one turn per event-loop iteration, in the order they were asked for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.granted = 0  # for tests and benchmarks

    async def take(self) -> None:
        if not self._busy and not self._waiters:
            self._busy = True
            self.granted += 1
            self._loop.call_soon(self._next)  # runs in the next iteration, after the sockets were polled
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        # Cancelled while waiting: the task cancels `waiter`, and `_next` skips it. Cancelled after its
        # grant: that turn goes unused, the next one is already scheduled.
        await waiter

    def _next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while waiting
                continue
            waiter.set_result(None)  # its step runs in the next iteration
            self.granted += 1
            self._loop.call_soon(self._next)
            return
        self._busy = False


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()


async def my_turn() -> None:
    """Wait for this loop's next free turn; the caller's synchronous code until its next await is the step."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = Turns(loop)
    await turns.take()
