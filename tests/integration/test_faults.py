"""Fault matrix: every fault, on each source alone and on all at once, in front of the real
Prometheus, the real Jaeger and the recorded Loki. Every case answers 200 within the deadline
+ 10 %, names the fault in the failed source's status, keeps the other sources' data, and
leaks no task and no socket: each case is checked on its own (tasks, descriptors, and objects the cyclic
collector frees unclosed), so a leak fails naming the case that made it."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from correlator import scratch
from correlator.api import create_app
from correlator.config import load_settings
from correlator.sources import _spool
from tests.fakes.faults import FAULTS, make_fault_proxy
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration.servers import Jaeger, Prometheus, free_port

pytestmark = pytest.mark.integration
SC = scenario()
DEADLINE = 1.5
EXPECTED = {"refused": "unavailable", "hang": "timeout", "trickle": "timeout", "500": "error", "429": "error",
            "malformed": "bad_response", "truncated": "bad_response", "oversized": "bad_response", "wrong_type": "bad_response"}
INTACT = {"jaeger": ("summary", "span_count", 5), "loki": ("summary", "log_count", 8), "prometheus": ("summary", "exemplar_count", 2)}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def run_case(faulty: set[str], fault: str, jaeger: Jaeger, prometheus: Prometheus, t0: int,
                   env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    loki = TestServer(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))
    await loki.start_server()
    upstreams = {"jaeger": jaeger.query_url, "loki": f"http://127.0.0.1:{loki.port}", "prometheus": prometheus.url}
    proxies, urls = [], {}
    for name, upstream in upstreams.items():
        if name in faulty and fault == "refused":
            urls[name] = f"http://127.0.0.1:{free_port()}"
            continue
        proxy = TestServer(make_fault_proxy(upstream, fault if name in faulty else "pass"))
        await proxy.start_server()
        proxies.append(proxy)
        urls[name] = f"http://127.0.0.1:{proxy.port}"
    settings = load_settings(environ={
        "CORRELATOR_JAEGER_URL": urls["jaeger"], "CORRELATOR_LOKI_URL": urls["loki"], "CORRELATOR_PROMETHEUS_URL": urls["prometheus"],
        "CORRELATOR_DEADLINE_SECONDS": str(DEADLINE), "CORRELATOR_CACHE_MAX_ENTRIES": "0",
        **{f"CORRELATOR_{n.upper()}_MAX_RESPONSE_BYTES": str(1024 * 1024) for n in upstreams}, **(env or {})})
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        started = time.perf_counter()
        response = await client.get(f"/correlate/{SC['trace_id']}", params={"start": str(t0), "end": str(t0 + 145_000_000)})
        elapsed = time.perf_counter() - started
        assert response.status == 200, (faulty, fault, response.status)
        return await response.json(), elapsed
    finally:
        await client.close()
        for proxy in proxies:
            await proxy.close()
        await loki.close()


CASES = [({source}, fault) for source in ("jaeger", "loki", "prometheus") for fault in FAULTS] + \
        [({"jaeger", "loki", "prometheus"}, fault) for fault in FAULTS]


def resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Each ResourceWarning, with where its object was made when tracemalloc runs (PYTHONTRACEMALLOC=20)."""
    found = []
    for w in caught:
        if issubclass(w.category, ResourceWarning):
            made = tracemalloc.get_object_traceback(w.source) if w.source is not None else None
            found.append(f"ResourceWarning: {w.message}" + (" made at\n" + "\n".join(made.format()) if made else ""))
    return found


async def leftovers(before: set[asyncio.Task[Any]], fds: int) -> list[str]:
    """What a finished case (its service, proxies and Loki closed) left behind: tasks still running, descriptors
    still open, and ResourceWarnings of objects collected unclosed (a collection now shows them at once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):  # a transport's close ends one loop iteration later
            await asyncio.sleep(0)
        gc.collect()
    found = resource_warnings(caught)
    running = [t for t in asyncio.all_tasks() if t not in before and not t.done()]
    if running:
        found.append(f"{len(running)} task(s) outlive the case: {sorted({t.get_coro().__qualname__ for t in running})}")  # type: ignore[union-attr]
    if open_fds() > fds:
        found.append(f"descriptors left open: {fds} → {open_fds()}")
    return found


async def test_fault_matrix(jaeger: Jaeger, prometheus: Prometheus, t0: int) -> None:
    await run_case(set(), "pass", jaeger, prometheus, t0)  # warm-up: imports, first connections
    # The first big answer written to file takes the process's lock on its scratch directory, held for the process's
    # life by design (scratch.py: a killed service's files are swept by whoever finds the lock free): not a leak.
    scratch.claim(_spool.SPOOL_DIR)
    await asyncio.sleep(0.1)
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    before = set(asyncio.all_tasks())
    failures = []
    for faulty, fault in CASES:
        with warnings.catch_warnings(record=True) as caught:  # a ResourceWarning during the case names the case
            warnings.simplefilter("always", ResourceWarning)
            body, elapsed = await run_case(faulty, fault, jaeger, prometheus, t0)
        problems = resource_warnings(caught)
        problems += await leftovers(before, fds)
        if elapsed > DEADLINE * 1.1:
            problems.append(f"took {elapsed:.2f}s")
        for name, (section, key, value) in INTACT.items():
            source = body["sources"][name]
            if name in faulty:
                if source["status"] != EXPECTED[fault]:
                    problems.append(f"{name} status {source['status']} ≠ {EXPECTED[fault]} ({source['error']})")
                if fault == "oversized" and not source["truncated"]:
                    problems.append(f"{name} oversized not reported truncated")
            elif source["status"] != "ok" or body[section][key] != value:
                problems.append(f"{name} not intact: {source['status']} {body[section][key]}")
        if problems:
            failures.append(f"{sorted(faulty)} {fault}: {'; '.join(problems)}")
    assert failures == []
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= tasks, "tasks leaked"
    assert open_fds() <= fds + 2, f"sockets leaked: {fds} → {open_fds()}"


async def test_json_sent_as_text_plain_is_accepted(jaeger: Jaeger, prometheus: Prometheus, t0: int) -> None:
    """Jaeger and Loki send JSON errors as text/plain: content type is never the judge."""
    body, _ = await run_case(set(), "pass", jaeger, prometheus, t0)
    assert all(s["status"] == "ok" for s in body["sources"].values())


async def test_jaeger_faults_with_its_answers_written_to_file(jaeger: Jaeger, prometheus: Prometheus, t0: int,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fault on Jaeger while its answers go to a file as they arrive (a threshold of 1 byte: every 200 is
    "big", sources/_spool.py): the same statuses as in memory, nothing left behind — no task, no descriptor, no file."""
    monkeypatch.setattr(_spool, "SPOOL_DIR", str(tmp_path))
    env = {"CORRELATOR_SERVER_OFFLOAD_BYTES": "1"}
    await run_case(set(), "pass", jaeger, prometheus, t0, env)  # warm-up: imports, first connections
    await asyncio.sleep(0.1)
    fds = open_fds()
    before = set(asyncio.all_tasks())
    failures = []
    for fault in FAULTS:
        if fault in ("malformed", "wrong_type"):
            continue  # a 200 of garbage goes to the worker process (tests/test_offload.py): not a transport fault
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            body, elapsed = await run_case({"jaeger"}, fault, jaeger, prometheus, t0, env)
        await asyncio.get_running_loop().run_in_executor(_spool._writer, lambda: None)  # its clean-up done
        problems = resource_warnings(caught) + await leftovers(before, fds)
        if elapsed > DEADLINE * 1.1:
            problems.append(f"took {elapsed:.2f}s")
        if body["sources"]["jaeger"]["status"] != EXPECTED[fault]:
            problems.append(f"jaeger status {body['sources']['jaeger']['status']} ≠ {EXPECTED[fault]}")
        if fault == "oversized" and not body["sources"]["jaeger"]["truncated"]:
            problems.append("oversized not reported truncated")
        if body["summary"]["log_count"] != INTACT["loki"][2]:
            problems.append(f"loki not intact: {body['summary']['log_count']} lines")
        if list(tmp_path.iterdir()):
            problems.append(f"files left: {[p.name for p in tmp_path.iterdir()]}")
        if problems:
            failures.append(f"{fault}: {'; '.join(problems)}")
    assert failures == []
