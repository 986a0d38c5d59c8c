"""Instructions per request of one route of a server (valgrind's callgrind): what a route costs beside the floor's.

    python bench/request_instructions.py /healthz 1000 -- python -m correlator serve --port PORT
    python bench/request_instructions.py /healthz 1000 -- python bench/floor.py PORT http://127.0.0.1:1 aiohttp

Starts the command (PORT replaced by a free port) under callgrind, warms it with 200 requests, zeroes the counters,
sends N requests 5 at a time, dumps and prints the instructions per request. Give the python binary itself, not a
shim script (pyenv's `python3` is a shell script: callgrind would measure the shell). Session 8 of
docs/performance-p3.md used it to price the service's middleware, access log, metrics and signals per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp


async def _load(url: str, count: int) -> None:
    gate = asyncio.Semaphore(5)
    async with aiohttp.ClientSession() as session:
        async def one() -> None:
            async with gate, session.get(url) as response:
                await response.read()
        await asyncio.gather(*(one() for _ in range(count)))


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    path, count, command = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if command[0] in ("python", "python3"):
        command[0] = os.path.realpath(sys.executable)
    command = [part.replace("PORT", str(port)) for part in command]
    out = Path(tempfile.mkdtemp(prefix="request-callgrind-")) / "callgrind.out"
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}{path}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                asyncio.run(_load(url, 1))
                break
            time.sleep(0.5)
        asyncio.run(_load(url, 200))
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
        asyncio.run(_load(url, count))
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
        dump = max(out.parent.glob("callgrind.out.*"), key=os.path.getmtime)
        found = re.search(r"^summary: (\d+)", dump.read_text(), re.M)
        if found is None:
            print(f"no summary in {dump}", file=sys.stderr)
            return 1
        print(f"{int(found.group(1)) / count / 1e3:.1f} k instructions per request of {path} ({count} requests; {dump})")
        return 0
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    sys.exit(main())
