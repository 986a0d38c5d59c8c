"""A big answer the worker process wrote to a file, sent by the kernel (sendfile) from a thread.

Why (bench P8): a 100k-span answer is ~34 MB. Read in 64 KiB pieces and written through aiohttp's
writer it cost the event loop ~75 ms of CPU per answer (two copies of every byte and ~530 trips
through the writer and the loop), while small requests waited between the pieces. uvloop has no
`loop.sendfile`, so a thread does it: `os.sendfile` from the answer's file to a duplicate of the
connection's socket, waiting for room with `poll` — the GIL is free during both, and the loop only
starts the thread and hears when it ends.

The duplicate descriptor keeps the socket the thread writes to the same one even if the loop closes
the connection meanwhile (a reused descriptor number must never receive another client's answer);
the thread closes it, and the answer file's descriptor, whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

__all__ = ["FileAnswer", "Piece"]

# A slice [start, end) of the file, or bytes sent as they are (a cache hit's `true`).
Piece = tuple[int, int] | bytes
STALL_SECONDS = 60.0  # a client that reads nothing for this long loses the connection (the thread must end)
_POLL_MS = 200  # how often a waiting thread looks whether the request was cancelled


class FileAnswer(web.StreamResponse):
    """`pieces` of the file at `path` as the body, with its Content-Length."""

    def __init__(self, path: str, pieces: Sequence[Piece], *, status: int, content_type: str,
                 charset: str | None = None) -> None:
        super().__init__(status=status)
        self.content_type = content_type
        if charset is not None:
            self.charset = charset
        self._path = path
        self._pieces = tuple(pieces)
        self.content_length = sum(len(p) if isinstance(p, bytes) else p[1] - p[0] for p in self._pieces)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        fd = os.open(self._path, os.O_RDONLY)  # now: the file may be unlinked later, its contents stay readable
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD":
                os.close(fd)
                return writer
            transport = request.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if transport is None or sock is None or transport.get_extra_info("sslcontext") is not None:
                await self._through_writer(fd)  # no plain socket to hand to the kernel (TLS, a test transport)
                return writer
            while transport.get_write_buffer_size():  # the headers go first (uvloop writes at the end of an iteration)
                await asyncio.sleep(0.0005)
            if transport.is_closing():
                raise ConnectionResetError("the client went away before its answer")
            out = os.dup(sock.fileno())
        except BaseException:
            os.close(fd)
            raise
        await _in_thread(fd, out, self._pieces, transport)
        return writer

    async def _through_writer(self, fd: int) -> None:
        try:
            for piece in self._pieces:
                if isinstance(piece, bytes):
                    await self.write(piece)
                    continue
                start, end = piece
                while start < end:
                    data = os.pread(fd, min(1 << 20, end - start), start)
                    if not data:
                        raise OSError(f"{self._path} ended at {start}")
                    start += len(data)
                    await self.write(data)
        finally:
            os.close(fd)


async def _in_thread(fd: int, out: int, pieces: tuple[Piece, ...], transport: asyncio.BaseTransport) -> None:
    """Send in a thread of its own (started here, so it always runs and closes both descriptors)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BaseException | None] = loop.create_future()
    stop = threading.Event()

    def settle(result: BaseException | None) -> None:
        if not done.done():
            done.set_result(result)

    def run() -> None:
        result: BaseException | None = None
        try:
            _send(fd, out, pieces, stop)
        except BaseException as exc:  # handed to the loop, raised there
            result = exc
        finally:
            os.close(fd)
            os.close(out)
        try:
            loop.call_soon_threadsafe(settle, result)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    try:
        threading.Thread(target=run, name="correlator-sendfile", daemon=True).start()
    except BaseException:  # no thread (the process is out of them): nobody else closes these
        os.close(fd)
        os.close(out)
        raise
    try:
        error = await done
    except asyncio.CancelledError:
        stop.set()  # the thread stops at its next wait or piece; the connection cannot be reused half-sent
        transport.close()
        raise
    if error is not None:
        transport.close()  # a half-sent body: the client must see the connection end, not wait for the rest
        raise ConnectionResetError(f"the answer could not be sent: {error}") from error


def _send(fd: int, out: int, pieces: tuple[Piece, ...], stop: threading.Event) -> None:
    poller = select.poll()
    poller.register(out, select.POLLOUT)
    progress = time.monotonic()

    def wait() -> None:
        nonlocal progress
        while not poller.poll(_POLL_MS):
            if stop.is_set():
                raise ConnectionAbortedError("cancelled")
            if time.monotonic() - progress > STALL_SECONDS:
                raise TimeoutError(f"the client read nothing for {STALL_SECONDS:.0f} s")

    for piece in pieces:
        if isinstance(piece, bytes):
            view = memoryview(piece)
            while view:
                try:
                    view = view[os.write(out, view):]
                    progress = time.monotonic()
                except BlockingIOError:
                    wait()
            continue
        start, end = piece
        while start < end:
            if stop.is_set():
                raise ConnectionAbortedError("cancelled")
            try:
                sent = os.sendfile(out, fd, start, end - start)
            except BlockingIOError:
                wait()
                continue
            if sent == 0:
                raise OSError(f"the answer's file ended at {start} of {end} bytes")
            start += sent
            progress = time.monotonic()
