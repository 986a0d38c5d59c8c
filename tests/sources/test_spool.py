"""A big Jaeger answer is written to a file as it arrives (sources/_spool.py, bench P8), never held whole by the
service: the same trace as the in-memory path, the same byte cap, the same timeouts, and its file always goes.

Each source-level test runs on both client paths: `aiohttp`, a real loopback Jaeger reached by the production fast
path (with a Content-Length, and chunked as a real Jaeger sends big answers), and `httpx`, the same bytes behind a
mock transport (the path the app tests take).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from correlator import offload as offload_module
from correlator.api import create_app
from correlator.config import load_settings
from correlator.errors import SourceError, SourceProtocolError
from correlator.ids import parse_trace_id
from correlator.offload import Offloader, RawTrace, _parse
from correlator.sources import _spool
from correlator.sources._http import make_client
from correlator.sources.jaeger import JaegerSource
from tests.apiclient import T0, TRACE, Backends
from tests.test_offload import big_trace, settings
from tests.waiting import until

BODY = orjson.dumps(big_trace(2000))  # ~950 KB: well over the 256 KiB threshold, and several batches of chunks
THRESHOLD = 256 * 1024
KINDS = ["aiohttp-length", "aiohttp-chunked", "httpx"]


@dataclass
class Jaeger:
    """What the backend sends: `body`; or (`stall`) its first half, then nothing more until the test ends."""

    body: bytes = BODY
    stall: bool = False
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The spooled files in a directory of this test's own (other processes write to /dev/shm too)."""
    monkeypatch.setattr(_spool, "SPOOL_DIR", str(tmp_path))
    return tmp_path


async def drained() -> None:
    """Once the writer thread has done what it was given (a failed body's clean-up runs there)."""
    await asyncio.get_running_loop().run_in_executor(_spool._writer, lambda: None)


async def unlinked() -> None:
    """Once the thread that removes the files of ended answers (offload._unlinker, one thread: first in, first out)
    has removed those handed to it so far."""
    await asyncio.get_running_loop().run_in_executor(offload_module._unlinker, lambda: None)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def fds_back_to(before: int) -> bool:
    """The descriptors open again no more than `before`, within 2 s: the in-process Jaeger's side of a connection
    the client cut closes a loop turn or two later (a leaked descriptor never comes back)."""
    for _ in range(200):
        if open_fds() <= before:
            return True
        await asyncio.sleep(0.01)
    return False


@asynccontextmanager
async def jaeger_source(kind: str, jaeger: Jaeger, **env: str) -> AsyncIterator[JaegerSource]:
    async def stream() -> AsyncIterator[bytes]:
        body = jaeger.body[:len(jaeger.body) // 2] if jaeger.stall else jaeger.body
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]
        jaeger.sent.set()
        if jaeger.stall:
            await asyncio.wait_for(jaeger.done.wait(), 60)

    def source(url: str, client: httpx.AsyncClient | None = None) -> JaegerSource:
        s = load_settings(environ={"CORRELATOR_JAEGER_URL": url, **env}).jaeger
        return JaegerSource(s, client or make_client(s))

    if kind == "httpx":
        class Stream(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in stream():
                    yield chunk

        s = load_settings(environ={"CORRELATOR_JAEGER_URL": "http://jaeger:16686", **env}).jaeger
        async with make_client(s, httpx.MockTransport(lambda r: httpx.Response(200, stream=Stream()))) as client:
            yield JaegerSource(s, client)
        return

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if kind == "aiohttp-length":
            response.content_length = len(jaeger.body)
        await response.prepare(request)
        async for chunk in stream():
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/v3/traces/{id}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    src = source(f"http://127.0.0.1:{port}")
    try:
        yield src
    finally:
        jaeger.done.set()
        await src.client.aclose()
        await runner.cleanup()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_big_answer_goes_to_a_file_and_gives_the_trace_the_in_memory_path_gives(kind: str, spool_dir: Path) -> None:
    async with jaeger_source(kind, Jaeger()) as source:
        result = await source.fetch(parse_trace_id(TRACE), None, None, THRESHOLD)
        raw = result.value
        assert isinstance(raw, RawTrace) and raw.body == b"" and raw.path is not None
        assert Path(raw.path).parent == spool_dir and Path(raw.path).read_bytes() == BODY  # every byte, in order
        from_file = _parse(raw)
        in_memory = _parse(RawTrace(BODY, TRACE, source.settings.max_spans, raw.what))
        assert from_file == in_memory and from_file[0] is not None and len(from_file[0].spans) == 2000
        path = raw.path
        del raw, result  # a RawTrace nobody outlines (a correlation refused before it) takes its file with it
        gc.collect()
        await unlinked()
        assert not Path(path).exists()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_small_answer_stays_in_memory_and_is_parsed_as_before(kind: str, spool_dir: Path) -> None:
    async with jaeger_source(kind, Jaeger()) as source:
        result = await source.fetch(parse_trace_id(TRACE), None, None, len(BODY) + 1)
    assert not isinstance(result.value, RawTrace) and result.value is not None and len(result.value.spans) == 2000
    assert list(spool_dir.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_big_answer_over_the_byte_cap_is_refused_as_before_and_leaves_no_file(kind: str, spool_dir: Path) -> None:
    fds = open_fds()
    async with jaeger_source(kind, Jaeger(), CORRELATOR_JAEGER_MAX_RESPONSE_BYTES=str(600_000)) as source:
        with pytest.raises(SourceProtocolError, match="body larger than 600000 bytes") as refused:
            await source.fetch(parse_trace_id(TRACE), None, None, THRESHOLD)
    assert refused.value.truncated
    await drained()
    assert list(spool_dir.iterdir()) == [] and await fds_back_to(fds)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_body_that_stops_midway_times_out_cancelled_and_leaves_no_file(kind: str, spool_dir: Path) -> None:
    fds = open_fds()
    jaeger = Jaeger(stall=True)
    async with jaeger_source(kind, jaeger) as source:
        fetch = asyncio.ensure_future(source.fetch(parse_trace_id(TRACE), None, None, THRESHOLD))
        await asyncio.wait_for(jaeger.sent.wait(), 10)
        await until(lambda: any(spool_dir.iterdir()))  # the client has the first half (sent is not received yet)
        assert [p.name[:17] for p in spool_dir.iterdir()] == ["correlator-trace-"]  # it was being written
        fetch.cancel()  # what the source's deadline does (asyncio.timeout), and a caller that goes away
        with pytest.raises(asyncio.CancelledError):
            await fetch
    await drained()
    assert list(spool_dir.iterdir()) == [] and await fds_back_to(fds)


async def test_a_big_body_too_slow_for_the_deadline_is_a_partial_answer_naming_jaeger(aiohttp_client: Any,
                                                                                   spool_dir: Path) -> None:
    class Slow(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield BODY[:400_000]
            await asyncio.sleep(60)

    backends = Backends()
    backends.jaeger = lambda r: httpx.Response(200, stream=Slow())
    client = await aiohttp_client(create_app(replace(settings(THRESHOLD), deadline_seconds=1.0), backends.transports()))
    response = await client.get(f"/correlate/{TRACE}?start={T0 // 1000}&end={(T0 + 90_000_000) // 1000}")  # all at once
    body = await response.json()
    assert response.status == 200 and body["sources"]["jaeger"]["status"] == "timeout"
    assert "jaeger" in body["sources"]["jaeger"]["error"]
    assert body["summary"]["log_count"] > 0  # the other sources' data is kept
    await drained()
    assert list(spool_dir.iterdir()) == []


async def test_the_outline_removes_the_file_once_the_worker_has_read_it(spool_dir: Path) -> None:
    async with jaeger_source("aiohttp-chunked", Jaeger()) as source:
        raw = (await source.fetch(parse_trace_id(TRACE), None, None, THRESHOLD)).value
    assert isinstance(raw, RawTrace) and raw.path is not None and Path(raw.path).exists()
    offload = Offloader(THRESHOLD)
    try:
        outline = await offload.outline(raw, settings(THRESHOLD))
    finally:
        offload.close()
    assert outline is not None and set(outline.services) == {"api-gateway", "auth-service", "course-service", "billing"}
    await unlinked()  # removed by a thread
    assert not Path(raw.path).exists()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_big_answer_with_nowhere_to_go_is_an_error_naming_the_directory(kind: str, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spool, "SPOOL_DIR", str(tmp_path / "gone"))
    async with jaeger_source(kind, Jaeger()) as source:
        with pytest.raises(SourceError, match=r"jaeger: GET /api/v3/traces/\w+: .*making a file for a big answer in .*gone"):
            await source.fetch(parse_trace_id(TRACE), None, None, THRESHOLD)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_write_that_fails_midway_is_an_error_and_leaves_no_file(kind: str, spool_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, chunks: Any) -> int:
        raise OSError(28, "No space left on device")

    fds = open_fds()
    monkeypatch.setattr(_spool.os, "writev", full)
    async with jaeger_source(kind, Jaeger()) as source:
        with pytest.raises(SourceError, match=r"writing a big answer to .*No space left on device"):
            await source.fetch(parse_trace_id(TRACE), None, None, THRESHOLD)
    await drained()
    assert list(spool_dir.iterdir()) == [] and await fds_back_to(fds)
