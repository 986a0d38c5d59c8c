"""SIGTERM: the request in flight finishes, new connections are refused, the process exits."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.conftest import REPO
from tests.waiting import until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


async def test_sigterm_drains_in_flight_requests(aiohttp_server: Any) -> None:
    asked: list[str] = []

    async def slow_trace(request: web.Request) -> web.Response:
        asked.append(request.path)
        await asyncio.sleep(1.0)
        return web.Response(status=404, text='{"error":{"httpCode":404,"message":"No traces found"}}')

    jaeger_app = web.Application()
    jaeger_app.router.add_get("/api/v3/traces/{id}", slow_trace)
    jaeger = await aiohttp_server(jaeger_app)
    port, closed = free_port(), free_port()
    env = {**os.environ, "CORRELATOR_JAEGER_URL": f"http://127.0.0.1:{jaeger.port}",
           "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{closed}", "CORRELATOR_PROMETHEUS_URL": f"http://127.0.0.1:{closed}",
           "CORRELATOR_LOKI_RETRY_ATTEMPTS": "1", "CORRELATOR_PROMETHEUS_RETRY_ATTEMPTS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "correlator", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port)
        async with httpx.AsyncClient(timeout=10) as client:
            in_flight = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/correlate/4bf92f3577b34da6a3ce929d0e0e4736"))
            # In flight in the service: it is asking Jaeger (a fixed 0.3 s could pass before a slow machine got there).
            await until(lambda: bool(asked), within=30)
            proc.send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.status_code == 200
            assert response.json()["sources"]["loki"]["status"] == "unavailable"
            await asyncio.sleep(0.2)
            try:
                await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                refused = False
            except httpx.TransportError:
                refused = True
            assert refused, "a new request was accepted after SIGTERM"
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_workers_share_the_port_and_all_stop_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "CORRELATOR_SERVER_WORKERS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "correlator", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port)
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(children) == 2
        async with httpx.AsyncClient(timeout=5) as client:
            answers = [await client.get(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"}) for _ in range(10)]
        assert all(a.status_code == 200 for a in answers)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
        assert not any(os.path.exists(f"/proc/{pid}") and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
                       for pid in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
