"""Load generator: the seed's GET /api/courses most of the time, plus the N+1, error and
fan-out paths and the schedule page, at a steady rate. Touches /tmp/loadgen.alive for its healthcheck."""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path

import aiohttp

PATHS = [("GET", "/api/courses", 6), ("GET", "/api/courses/7/lessons", 2), ("POST", "/api/enroll", 1),
         ("GET", "/api/dashboard", 2), ("GET", "/api/courses/7/schedule", 1)]


async def main(target: str, rate: float, count: int | None) -> None:
    alive = Path("/tmp/loadgen.alive")
    weights = [w for _m, _p, w in PATHS]
    sent = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while count is None or sent < count:
            method, path, _w = random.choices(PATHS, weights)[0]
            try:
                async with session.request(method, target + path) as response:
                    await response.read()
            except (TimeoutError, aiohttp.ClientError):
                pass
            sent += 1
            alive.touch()
            await asyncio.sleep(1 / rate)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="http://localhost:3001")
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument("--count", type=int, help="stop after this many (default: forever)")
    args = parser.parse_args()
    asyncio.run(main(args.target, args.rate, args.count))
