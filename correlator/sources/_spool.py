"""A big backend answer written to a file as it arrives, never whole in the service's memory (bench P8).

Why: a 100k-span Jaeger answer is ~32 MB. Grown in a bytearray on the event loop it cost the loop
the growth's copies and page faults, then a 32 MB write to hand it to the worker process, then the
`free` of 32 MB (2–20 ms in one call): ~55 ms of loop CPU per big correlation. Here the chunks the
client reads are gathered into batches of `BATCH` bytes and each batch is written by one thread
(`os.writev`: the GIL is free while the kernel copies), at most one batch in flight while the next
is gathered; the loop only hands batches over.

The file goes in the worker's answer directory (tmpfs where there is one). Whoever gets a `Spooled`
owns its file; on any failure here (the byte cap, a timeout or cancellation mid-body, a write that
fails) the file is closed and removed by the writer thread after the write still running, so no
descriptor is closed under it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from correlator import scratch

__all__ = ["BATCH", "SPOOL_DIR", "SpoolFailed", "Spooled", "discard", "spool"]

BATCH = 1 << 20  # bytes per thread hop: 32 hops for a 100k-span answer
HEAD = 1024  # bytes kept in memory from the start: enough to tell a page (HTML) from JSON
SPOOL_DIR = scratch.DIRECTORY  # as offload._ANSWERS: the worker reads it from there

# One thread: writes of one body are in order, and a failed body's clean-up runs after its last write.
_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="correlator-spool")


@dataclass(frozen=True, slots=True)
class Spooled:
    """A body written to `path` (`size` bytes), the caller's to remove; `head` is its first bytes."""

    path: str
    size: int
    head: bytes


class SpoolFailed(OSError):
    """The body could not be written to its file (a full tmpfs): the message says where."""


async def spool(first: bytes | bytearray, read: Callable[[], Awaitable[bytes | bytearray]], max_bytes: int,
                too_large: Callable[[], Exception]) -> Spooled:
    """`first`, then what `read()` gives until it gives b"", into a new file; raises `too_large()` once the body
    passes `max_bytes`."""
    loop = asyncio.get_running_loop()
    try:
        sink = _Sink(*scratch.mkstemp("trace", SPOOL_DIR))
    except OSError as exc:
        raise SpoolFailed(exc.errno, f"making a file for a big answer in {SPOOL_DIR or tempfile.gettempdir()}: "
                                     f"{exc.strerror}") from None
    head = bytes(first[:HEAD])
    size = len(first)
    batch: list[Chunk] = [first] if first else []
    batched = size
    writing: asyncio.Future[None] | None = None
    try:
        while chunk := await read():
            size += len(chunk)
            if size > max_bytes:
                raise too_large()
            if len(head) < HEAD:
                head += chunk[:HEAD - len(head)]
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BATCH:
                if writing is not None:
                    await writing
                writing = loop.run_in_executor(_writer, sink.write, batch)
                batch, batched = [], 0
        if writing is not None:
            await writing
        await loop.run_in_executor(_writer, sink.finish, batch)
    except BaseException:
        try:
            _writer.submit(sink.abandon)
        except RuntimeError:  # the interpreter is exiting: no thread any more
            sink.abandon()
        raise
    return Spooled(sink.path, size, head)


Chunk = bytes | bytearray | memoryview


class _Sink:
    """The file being written. Its methods run on the one writer thread, one after another."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd: int | None = fd
        self.path = path

    def write(self, chunks: list[Chunk]) -> None:
        try:
            while chunks and self.fd is not None:
                written = os.writev(self.fd, chunks)
                while chunks and written >= len(chunks[0]):
                    written -= len(chunks.pop(0))
                if written:
                    chunks[0] = memoryview(chunks[0])[written:]
        except OSError as exc:
            raise SpoolFailed(exc.errno, f"writing a big answer to {self.path}: {exc.strerror}") from None

    def finish(self, chunks: list[Chunk]) -> None:
        self.write(chunks)
        self._close()

    def abandon(self) -> None:
        self._close()
        _unlink(self.path)

    def _close(self) -> None:
        if self.fd is not None:  # once: a descriptor number closed twice may be someone else's by then
            fd, self.fd = self.fd, None
            os.close(fd)


def discard(spooled: Spooled) -> None:
    """Remove a spooled body nobody will read (off the loop: freeing a big tmpfs file's pages takes milliseconds)."""
    try:
        _writer.submit(_unlink, spooled.path)
    except RuntimeError:  # the interpreter is exiting
        _unlink(spooled.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
