"""P3's CPU per correlation as instructions (valgrind's callgrind): a figure other processes on the machine cannot move.

    python bench/p3_instructions.py [--requests 150] [--floor aiohttp]

Starts the Go backends (20 ms) and `correlator serve` under callgrind (bench/run.py p3's settings: one worker, cache
off), warms it up with 30 correlations, zeroes the counters, sends `--requests` correlations of random IDs (5 at a
time), dumps and prints the server's instructions per correlation. Slow (a few minutes: Python runs ~50× slower under
callgrind, start-up included) and user-space only (the kernel's send/recv are not counted), so compare it between
trees or with `--floor`, never with CPU seconds. What is shared between correlations for a second or two (the
standing and untraced lookups) depends on timing, so the count moves by ~1 % between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import run as bench  # noqa: E402


async def _load(api: str, count: int, concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one() -> None:
            async with gate, session.get(f"{api}/correlate/{random.getrandbits(128):032x}") as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--floor", help="measure bench/floor.py with this client instead (as `run.py p3 --floor`)")
    args = parser.parse_args()
    backend_port, api_port = bench.free_port(), bench.free_port()
    with contextlib.redirect_stdout(io.StringIO()):
        backends = bench._backends(backend_port, 20, 0.0)
    base, api = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{api_port}"
    env = {**os.environ, "CORRELATOR_JAEGER_URL": base, "CORRELATOR_LOKI_URL": base, "CORRELATOR_PROMETHEUS_URL": base,
           "CORRELATOR_CACHE_MAX_ENTRIES": "0", "CORRELATOR_DEADLINE_SECONDS": "20"}  # 20 s: callgrind is slow
    command = ([sys.executable, str(REPO / "bench" / "floor.py"), str(api_port), base, args.floor] if args.floor else
               [sys.executable, "-m", "correlator", "serve", "--port", str(api_port), "--workers", "1"])
    out = Path(tempfile.mkdtemp(prefix="p3-callgrind-")) / "callgrind.out"
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/healthz", timeout=5).status_code == 200:
                    break
            time.sleep(0.5)
        asyncio.run(_load(api, 30, 5))
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
        statuses = asyncio.run(_load(api, args.requests, 5))
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
        dump = max(out.parent.glob("callgrind.out.*"), key=os.path.getmtime)
        found = re.search(r"^summary: (\d+)", dump.read_text(), re.M)
        if found is None:
            print(f"no summary in {dump}", file=sys.stderr)
            return 1
        label = f"floor {args.floor}" if args.floor else "correlator"
        print(f"P3 {label}: {int(found.group(1)) / args.requests / 1e6:.2f} M instructions per correlation "
              f"({args.requests} requests, statuses {statuses}; callgrind output {dump})")
        return 0
    finally:
        server.terminate()
        server.wait(60)
        backends.terminate()
        backends.wait(10)


if __name__ == "__main__":
    sys.exit(main())
