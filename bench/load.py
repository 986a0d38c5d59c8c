"""Load generator, run as its own process: N concurrent clients for D seconds, distinct trace IDs.

    python bench/load.py http://127.0.0.1:8080 100 60
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

import aiohttp


async def main(base: str, clients: int, duration: float) -> None:
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    stop = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                trace_id = f"{random.getrandbits(128):032x}"  # distinct: no cache hits, full work
                started = time.perf_counter()
                try:
                    async with session.get(f"{base}/correlate/{trace_id}") as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                        if response.status >= 500:
                            errors += 1
                except (TimeoutError, aiohttp.ClientError):
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - started
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    print(f"P3  {clients} clients × {duration:.0f}s: {len(latencies) / elapsed:.0f} correlations/s, "
          f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, errors {errors}, statuses {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
