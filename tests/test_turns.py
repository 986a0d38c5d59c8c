"""One CPU-heavy step per event-loop turn (correlator/turns.py): cheap work gets in between."""

from __future__ import annotations

import asyncio
import itertools
import time

from correlator.turns import my_turn


class Ticker:
    """Counts event-loop iterations: a callback that schedules itself once per iteration."""

    def __init__(self) -> None:
        self.tick = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._step)

    def _step(self) -> None:
        self.tick += 1
        self._handle = self._loop.call_soon(self._step)

    def stop(self) -> None:
        self._handle.cancel()


async def test_steps_woken_together_run_in_separate_turns_in_the_order_they_asked() -> None:
    ticker = Ticker()
    ran: list[tuple[str, int]] = []
    go = asyncio.Event()

    async def heavy(name: str) -> None:
        await go.wait()  # every task wakes in the same iteration
        await my_turn()
        ran.append((name, ticker.tick))
        time.sleep(0.002)  # the step: CPU, no await

    tasks = [asyncio.create_task(heavy(str(i))) for i in range(5)]
    await asyncio.sleep(0)
    go.set()
    await asyncio.gather(*tasks)
    ticker.stop()
    assert [name for name, _ in ran] == ["0", "1", "2", "3", "4"]
    ticks = [tick for _, tick in ran]
    assert all(b > a for a, b in itertools.pairwise(ticks))  # never two steps in one iteration


async def test_a_cheap_request_is_answered_while_steps_queue() -> None:
    """A socket answered by a plain (ungated) handler replies after at most a couple of heavy steps, not all of them."""
    steps_done = 0

    async def heavy() -> None:
        nonlocal steps_done
        await my_turn()
        time.sleep(0.005)
        steps_done += 1

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.05)  # accepted
    tasks = [asyncio.create_task(heavy()) for _ in range(40)]  # 200 ms of steps, ready at once
    await asyncio.sleep(0)
    writer.write(b"ping\n")
    assert await reader.readline() == b"ping\n"
    answered_after = steps_done
    await asyncio.gather(*tasks)
    writer.close()
    server.close()
    await server.wait_closed()
    assert answered_after <= 5, f"the cheap request waited for {answered_after} of 40 heavy steps"


async def test_a_step_cancelled_while_waiting_does_not_stop_the_others() -> None:
    ran: list[int] = []

    async def heavy(i: int) -> None:
        await my_turn()
        ran.append(i)

    tasks = [asyncio.create_task(heavy(i)) for i in range(4)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert ran == [0, 2, 3]
