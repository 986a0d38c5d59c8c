"""Load helpers for `bench/run.py flood` and `p8`, each run as its own process (its CPU is not the server's).

    python bench/flood.py open URL RATE SECONDS          open loop: RATE unique-ID correlations/s, whatever the answers
    python bench/flood.py closed URL CLIENTS SECONDS     closed loop: CLIENTS callers, each waits for its answer
    python bench/flood.py probe URL PATHS SECONDS        a caller per path (comma-separated), each asking again
                                                         10 ms after its answer (`unique`: a new small
                                                         correlation; `big`: a new big one)

Each prints one JSON object: statuses, and latencies in ms per status (open/closed) or per path (probe).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

import aiohttp
import orjson


def _unique_path() -> str:
    return f"/correlate/{random.getrandbits(128):032x}"


def _path(name: str) -> str:
    """A probe path; `unique`: a new trace ID each time (a small correlation), `big`: a new one the
    bench backends answer with their big trace (P8)."""
    if name == "unique":
        return _unique_path()
    if name == "big":
        return f"/correlate/b16b16{random.getrandbits(104):026x}"
    return name


def _summary(samples: dict[str, list[float]], seconds: float) -> dict[str, object]:
    out: dict[str, object] = {"seconds": seconds}
    for key, values in samples.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        out[key] = {"n": len(values), "p50": values[len(values) // 2], "p99": p99, "max": values[-1]}
    return out


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        async with session.get(url) as response:
            await response.read()
            status = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        status = type(exc).__name__
    return status, (time.perf_counter() - started) * 1000


async def open_loop(base: str, rate: float, seconds: float) -> dict[str, object]:
    samples: dict[str, list[float]] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        async def one() -> None:
            status, ms = await _get(session, base + _unique_path())
            samples.setdefault(status, []).append(ms)

        loop = asyncio.get_running_loop()
        started, sent, tasks = loop.time(), 0, set()
        while (elapsed := loop.time() - started) < seconds:
            for _ in range(int(elapsed * rate) - sent):  # catch up on the schedule: an open loop
                task = asyncio.ensure_future(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    return {"sent": sent, **_summary(samples, seconds)}


async def closed_loop(base: str, clients: int, seconds: float) -> dict[str, object]:
    samples: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=10)) as session:
        end = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < end:
                status, ms = await _get(session, base + _unique_path())
                samples.setdefault(status, []).append(ms)

        await asyncio.gather(*(caller() for _ in range(clients)))
    return _summary(samples, seconds)


async def probe(base: str, paths: list[str], seconds: float) -> dict[str, object]:
    """One sequential caller per path, all at once: a stall in one path does not space out the others' samples."""
    samples: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        end = time.perf_counter() + seconds

        async def caller(path: str) -> None:
            while time.perf_counter() < end:
                status, ms = await _get(session, base + _path(path))
                samples.setdefault(path, []).append(ms)
                statuses[status] = statuses.get(status, 0) + 1
                await asyncio.sleep(0.01)

        await asyncio.gather(*(caller(path) for path in paths))
    return {"statuses": statuses, **_summary(samples, seconds)}


def main() -> None:
    mode, base = sys.argv[1], sys.argv[2].rstrip("/")
    if mode == "open":
        result = asyncio.run(open_loop(base, float(sys.argv[3]), float(sys.argv[4])))
    elif mode == "closed":
        result = asyncio.run(closed_loop(base, int(sys.argv[3]), float(sys.argv[4])))
    else:
        result = asyncio.run(probe(base, sys.argv[3].split(","), float(sys.argv[4])))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
