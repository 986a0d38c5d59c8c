"""`correlator serve` with a watch on its event loop's CPU, for `bench/run.py p8`.

    python bench/loopstall.py STATS.json serve --port N

A task wakes every millisecond and notes how much CPU the event loop's thread used since it last ran:
that is the work of the callbacks that ran in between, so a long one shows as a long gap — in CPU
time, which other processes on a busy machine cannot inflate (unlike a p99 in wall time). Every
second STATS.json gets the thread's CPU seconds so far and a histogram of those gaps. SIGUSR1 slows
the watcher to 10 wakes a second and back (its own CPU would blur a measurement of the loop's CPU).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import orjson

sys.path.insert(0, os.getcwd())  # the tree it is started in, as `python -m correlator` does
from correlator import cli

BOUNDS_MS = (1, 2, 5, 10, 20, 50)  # gaps counted as ≥ each bound


def _watch(stats_path: str) -> None:
    tick = [0.001]

    def toggle() -> None:  # SIGUSR1: tick every 0.1 s (the watcher's own CPU out of a measurement of the loop's), and back
        tick[0] = 0.1 if tick[0] == 0.001 else 0.001

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, toggle)

    async def watch() -> None:
        counts = dict.fromkeys(BOUNDS_MS, 0)
        longest, last_dump = 0.0, time.monotonic()
        before = time.thread_time()
        while True:
            interval = tick[0]
            await asyncio.sleep(interval)
            now = time.thread_time()
            gap_ms, before = (now - before) * 1000, now
            if interval == tick[0] == 0.001:  # slowed down, a gap is 0.1 s of the loop's work, not a stall
                longest = max(longest, gap_ms)
                for bound in BOUNDS_MS:
                    if gap_ms >= bound:
                        counts[bound] += 1
            if time.monotonic() - last_dump >= 1.0:
                last_dump = time.monotonic()
                stats = {"loop_cpu_s": now, "wall_s": last_dump, "longest_ms": longest, "gaps_at_least_ms": counts}
                with open(stats_path + ".tmp", "wb") as file:
                    file.write(orjson.dumps(stats, option=orjson.OPT_NON_STR_KEYS))
                os.replace(stats_path + ".tmp", stats_path)

    task = asyncio.ensure_future(watch())
    _keep.append(task)


_keep: list[Any] = []


def main() -> None:
    stats_path = sys.argv[1]
    make_loop = cli._event_loop

    def watched_loop() -> asyncio.AbstractEventLoop:
        loop = make_loop()
        loop.call_soon(_watch, stats_path)
        return loop

    cli._event_loop = watched_loop
    raise SystemExit(cli.main(sys.argv[2:]))


if __name__ == "__main__":
    main()
