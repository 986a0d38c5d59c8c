"""Files a killed correlator leaves in /dev/shm are swept by the next one to start, never a live one's (correlator/scratch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from correlator import scratch
from tests.apiclient import TRACE
from tests.conftest import REPO
from tests.test_offload import big_trace
from tests.test_shutdown import free_port, wait_listening

BODY = orjson.dumps(big_trace(2000))  # ~950 KB: over the 256 KiB offload threshold, so spooled to a file
STALLED = "0af7651916cd43dd8448eb211c80319c"  # its answer stops halfway: the service is mid-body when killed

OWNER = """
import sys, time
from correlator import scratch
scratch.DIRECTORY = sys.argv[1]
fd, path = scratch.mkstemp("trace", sys.argv[1])
import os
os.write(fd, b"half an answer")
print(path, flush=True)
time.sleep(120)
"""


@contextmanager
def owner(directory: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A process writing one file of ours in `directory` (as the spool does), alive until the test ends or kills it."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(OWNER), str(directory)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc, Path(proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def killed(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


def test_a_killed_owners_files_go_and_a_live_owners_stay(tmp_path: Path) -> None:
    with owner(tmp_path) as (dead, dead_file), owner(tmp_path) as (live, live_file):
        dead_tag = dead_file.name.split("-")[2]
        assert dead_tag.startswith(f"{dead.pid}.") and (tmp_path / f"correlator-{dead_tag}.lock").exists()
        killed(dead)
        assert dead_file.exists()  # what SIGKILL leaves: nothing removed it
        swept = scratch.sweep(str(tmp_path))
        assert not dead_file.exists() and not (tmp_path / f"correlator-{dead_tag}.lock").exists()
        assert swept.files == 1 and swept.bytes == len(b"half an answer") and swept.owners == (dead_tag,)
        assert live_file.read_bytes() == b"half an answer"  # its owner lives: its lock is held
        assert scratch.sweep(str(tmp_path)).files == 0 and live_file.exists() and live.poll() is None


def test_an_owner_that_exits_normally_leaves_nothing(tmp_path: Path) -> None:
    script = OWNER.replace("time.sleep(120)", "os.close(fd)")  # a file it never removed itself
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and Path(done.stdout.strip()).parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_a_reused_pid_does_not_keep_a_dead_owners_files_and_others_files_stay(tmp_path: Path) -> None:
    """A dead owner whose pid is alive again (in a container the restarted service is pid 1 again): its lock, not
    its pid, says it is gone. Not ours and never touched: untagged names (an older version's), another user's
    files, anything else."""
    reused = f"{os.getpid()}.0123abcd"  # this very process's pid: alive, but not the owner
    (tmp_path / f"correlator-{reused}.lock").write_bytes(b"")
    (tmp_path / f"correlator-answer-{reused}-x1y2z3").write_bytes(b"an answer")
    (tmp_path / f"correlator-trace-{reused}-a1b2c3").write_bytes(b"a body")
    kept = ["correlator-trace-q8w7e6r5", "correlator-answer-1.0123abcd-x", "notes.txt", "correlator-1.lock",
            ".correlator-claim-abc"]
    for name in kept:
        (tmp_path / name).write_bytes(b"not swept")
    if os.getuid() == 0:  # another user's dead owner: not ours to remove
        other = "77.89abcdef"
        for name in (f"correlator-{other}.lock", f"correlator-trace-{other}-zz"):
            (tmp_path / name).write_bytes(b"")
            os.chown(tmp_path / name, 65534, 65534)
            kept.append(name)
    assert scratch.sweep(str(tmp_path)).files == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_sweep_in_a_directory_that_is_gone_or_empty_removes_nothing_and_does_not_raise(tmp_path: Path) -> None:
    assert scratch.sweep(str(tmp_path / "gone")).files == 0 and scratch.sweep(str(tmp_path)).files == 0


# ---------------------------------------------------------------------------------------- the real service


@asynccontextmanager
async def jaeger() -> AsyncIterator[str]:
    """A Jaeger that answers TRACE whole and STALLED halfway (then nothing more until the test ends)."""
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(BODY)
        await response.prepare(request)
        if request.match_info["id"] == STALLED:
            await response.write(BODY[:len(BODY) // 2])
            await done.wait()
            return response
        await response.write(BODY)
        return response

    app = web.Application()
    app.router.add_get("/api/v3/traces/{id}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        done.set()
        await runner.cleanup()


@asynccontextmanager
async def service(jaeger_url: str) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    port, closed = free_port(), free_port()
    env = {**os.environ, "CORRELATOR_JAEGER_URL": jaeger_url, "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{closed}",
           "CORRELATOR_PROMETHEUS_URL": f"http://127.0.0.1:{closed}", "CORRELATOR_LOKI_RETRY_ATTEMPTS": "1",
           "CORRELATOR_PROMETHEUS_RETRY_ATTEMPTS": "1", "CORRELATOR_JAEGER_RETRY_ATTEMPTS": "1",
           "CORRELATOR_DEADLINE_SECONDS": "120"}  # the stalled bodies stay mid-way for the whole test
    proc = subprocess.Popen([sys.executable, "-m", "correlator", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            scratch.sweep()  # what this kill left


def files_of(pid: int) -> list[str]:
    return sorted(name for name in os.listdir(scratch.DIRECTORY or "/tmp") if f"-{pid}." in name)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


async def mid_body(port: int, pid: int) -> asyncio.Task[httpx.Response]:
    """A correlation whose Jaeger answer is being written to a file when this returns (it never ends)."""
    client = httpx.AsyncClient(timeout=60)
    asking = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/correlate/{STALLED}"))
    asking.add_done_callback(lambda _: asyncio.ensure_future(client.aclose()))
    deadline = time.monotonic() + 15
    while not any(name.startswith("correlator-trace-") for name in files_of(pid)):
        assert time.monotonic() < deadline, "the stalled body never reached its file"
        await asyncio.sleep(0.05)
    return asking


@pytest.mark.skipif(scratch.DIRECTORY is None, reason="the service keeps its files in /dev/shm here")
async def test_a_service_killed_mid_answer_leaves_files_the_next_one_sweeps_and_a_live_ones_stay() -> None:
    async with jaeger() as jaeger_url, service(jaeger_url) as (doomed, doomed_port), service(jaeger_url) as (live, live_port):
        async with httpx.AsyncClient(timeout=30) as client:  # a big trace first: the worker process starts
            assert (await client.get(f"http://127.0.0.1:{doomed_port}/correlate/{TRACE}")).status_code == 200
        workers = children_of(doomed.pid)
        assert workers, "no offload worker started"
        doomed_asking, live_asking = await mid_body(doomed_port, doomed.pid), await mid_body(live_port, live.pid)
        try:
            killed(doomed)
            left = files_of(doomed.pid)  # what SIGKILL leaves: the body being written, the owner's lock file
            assert any(n.startswith("correlator-trace-") for n in left) and any(n.endswith(".lock") for n in left)
            # Its worker ends with it (it went on forever, an orphan holding its models).
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                      for w in workers):
                assert time.monotonic() < deadline, "the killed service's worker process outlived it"
                await asyncio.sleep(0.05)
            live_files = files_of(live.pid)
            async with service(jaeger_url):  # starting: it sweeps
                assert files_of(doomed.pid) == []
                assert files_of(live.pid) == live_files and any(n.startswith("correlator-trace-") for n in live_files)
        finally:
            doomed_asking.cancel()
            live_asking.cancel()
            for worker in workers:  # an orphan this test made, if the check above failed
                with contextlib.suppress(OSError):
                    if b"multiprocessing" in Path(f"/proc/{worker}/cmdline").read_bytes():
                        os.kill(worker, signal.SIGKILL)


@pytest.mark.skipif(scratch.DIRECTORY is None, reason="the service keeps its files in /dev/shm here")
async def test_the_worker_names_its_answer_files_as_the_service_so_they_are_swept_with_its_own() -> None:
    """The answer files the worker process writes carry the service's tag, not their own (the worker holds no lock)."""
    from correlator.ids import parse_trace_id
    from correlator.model import SourceReport, SourceStatus, Window
    from correlator.offload import Offloader, RawTrace
    from tests.apiclient import T0
    from tests.test_offload import settings

    offload = Offloader(1)
    ok = SourceReport(SourceStatus.OK, 1.0)
    raw = RawTrace(orjson.dumps(big_trace(50)), TRACE, 1000, "GET /api/v3/traces/x")
    try:
        _light, answer, _then = await offload.assemble(settings(1), parse_trace_id(TRACE), Window(T0, T0 + 1), raw, None,
                                                       {"jaeger": ok, "loki": ok, "prometheus": ok}, (), (), None)
    finally:
        offload.close()
    ours = scratch.tag()
    assert ours is not None and Path(scratch.DIRECTORY or "", f"correlator-{ours}.lock").exists()
    for path in (answer.path, answer.html_path):
        assert path is not None and Path(path).name.startswith(f"correlator-answer-{ours}-")


async def test_a_big_trace_whose_files_find_no_room_is_a_partial_answer_naming_jaeger_not_a_500(
        aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker cannot write the answer (a full /dev/shm: a container's is 64 MB unless given more, and a cached
    100k-span answer is ~74 MB; here a directory that is gone): the answer names Jaeger and why, with Loki's lines."""
    from correlator import offload
    from correlator.api import create_app
    from tests.apiclient import Backends
    from tests.test_offload import settings

    monkeypatch.setattr(offload, "_ANSWERS", str(tmp_path / "full"))  # the worker writes where the service says
    backends = Backends()
    backends.jaeger = lambda _request: httpx.Response(200, content=BODY)
    client = await aiohttp_client(create_app(settings(1024), backends.transports()))
    response = await client.get(f"/correlate/{TRACE}")
    assert response.status == 200
    body = await response.json()
    jaeger = body["sources"]["jaeger"]
    assert jaeger["status"] == "bad_response" and "full" in jaeger["error"] and "No such file" in jaeger["error"]
    assert body["sources"]["loki"]["status"] == "ok" and body["summary"]["log_count"] > 0
