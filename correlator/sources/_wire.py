"""The backends' GETs on a lean HTTP/1.1 client: asyncio protocols, a keep-alive pool per backend,
and `httptools` (llhttp, the parser uvicorn and aiohttp are built on) reading the answers.

Why not aiohttp's client, which this replaces on the production path: under bench P3 a small
correlation's four GETs cost ~1.3 M instructions there, more than all of our own work on the
answers; most of it is per-request machinery the correlator does not use (a ClientRequest and
ClientResponse with their multidicts, yarl URL joins, cookie handling, trace signals, one timer
re-armed per chunk). Here a GET is one pre-encoded request line and header block, one write, one
parser feed and one future (docs/performance-p3.md "Session 11: the client"). What it keeps:
the byte cap (on decoded bytes), gzip/deflate, keep-alive with an idle expiry, the connection
limit with a pool wait, connect/read(inactivity)/pool timeouts, TLS, and httpx's exception
types for every failure, so `_http.as_source_error` and the retry layer above cannot tell.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

from correlator.sources._resilience import Resilience
from correlator.sources._spool import Spooled, spool

__all__ = ["Headers", "WireGet", "WirePool", "WireResponse"]

_BLOCKS_KEPT = 64  # header blocks remembered per backend: a few tenants' worth; callers choosing values cannot grow it
_HIGH_WATER = 4 << 20  # bytes buffered before the socket stops being read (a big answer spooled slower than it comes)


class Headers(dict[str, str]):
    """An answer's headers: lower-cased names (repeated ones joined by ", "), looked up in any case."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class WireResponse:
    """One answer: status and headers at once, the body as it arrives (`read_chunk`)."""

    __slots__ = ("_connection", "_decoder", "_done", "_error", "_raw", "_waiter", "content_length", "headers",
                 "keep_alive", "status")

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers = Headers()
        self.content_length: int | None = None
        self.keep_alive = False
        self._raw = bytearray()  # body bytes arrived and not yet taken
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read_chunk(self) -> bytes | bytearray:
        """The body bytes that arrived since the last call (decoded), b"" once it is complete."""
        while True:
            if self._raw:
                raw, self._raw = self._raw, bytearray()
                if self._connection is not None:
                    self._connection.resume()
                if self._decoder is None:
                    return raw
                decoded = self._decode(raw)
                if decoded:  # b"" would read as the end: a gzip header alone decodes to nothing yet
                    return decoded
                continue
            if self._error is not None:
                raise self._error
            if self._done:
                if self._decoder is not None:
                    tail: bytes = self._decoder.flush()
                    self._decoder = None
                    if tail:
                        return tail
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _decode(self, raw: bytearray) -> bytes:
        """At most `_HIGH_WATER` decoded bytes a call (the rest waits in `_raw`): a small body that inflates
        to gigabytes meets the byte cap a few MB past it, never all in memory."""
        try:
            decoded = self._decoder.decompress(raw, _HIGH_WATER)
        except zlib.error as exc:
            raise httpx.DecodingError(f"the answer's {self.headers.get('content-encoding')} body is broken: {exc}") from None
        rest = self._decoder.unconsumed_tail
        if rest:
            self._raw[:0] = rest
        return bytes(decoded)

    def release(self) -> None:
        """Back to the pool when the answer was read to its end on a connection that stays open; else closed."""
        connection, self._connection = self._connection, None  # type: ignore[assignment]
        if connection is not None:
            connection.pool.give_back(connection, self._done and self._error is None and self.keep_alive)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: the parser's callbacks fill the answer in flight."""

    __slots__ = ("closed", "headers_ready", "idle_since", "last_read", "paused", "pool", "reader", "response", "timer",
                 "transport")

    def __init__(self, pool: WirePool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.reader = httptools.HttpResponseParser(self)
        self.response: WireResponse | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None  # the read timeout of the answer in flight

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: this connection cannot be trusted with the next request
            self.close()
            return
        self.last_read = self.pool.loop.time()
        try:
            self.reader.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the backend switched protocols on a GET"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the backend's answer is not valid HTTP/1.1: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close: a half-closed backend answers nothing more

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is None or response._done:
            return
        if response.status and response.content_length is None and not response.headers.get("transfer-encoding"):
            # No length and not chunked: the body ends with the connection (HTTP/1.0 style).
            try:
                self.reader.feed_data(b"")
            except httptools.HttpParserError:
                pass
            if not response._done:
                response._done, response.keep_alive = True, False
                response._wake()
            return
        reason = f"{type(exc).__name__}: {exc}" if exc else "the backend closed the connection"
        error: httpx.TransportError = (httpx.ReadError(reason) if isinstance(exc, OSError)
                                       else httpx.RemoteProtocolError(f"{reason} before the answer was complete"))
        self._fail(error)

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.response.headers
        previous = dict.get(headers, key)
        dict.__setitem__(headers, key, text if previous is None else previous + ", " + text)

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.reader.get_status_code()
        response.keep_alive = self.reader.should_keep_alive()
        headers = response.headers
        length = dict.get(headers, "content-length")
        if length is not None and length.isdigit():
            response.content_length = int(length)
        encoding = dict.get(headers, "content-encoding")
        if encoding is not None and encoding not in ("identity", ""):
            if encoding in ("gzip", "x-gzip"):
                response._decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
            elif encoding == "deflate":
                response._decoder = zlib.decompressobj()
            else:
                self._fail(httpx.DecodingError(f"the backend sent a body in an encoding not asked for: {encoding}"))
                return
        ready = self.headers_ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response._raw += body
        if len(response._raw) >= _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        response._wake()

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response._done = True
        response._wake()

    # ours
    def check_inactivity(self) -> None:
        """The read timeout: no byte for `read_timeout` seconds fails the answer in flight. One timer per
        answer, re-armed only when it fires (not per chunk); paused, it is us who are slow, not the backend."""
        response, limit, loop = self.response, self.pool.read_timeout, self.pool.loop
        if response is None or response._done or response._error is not None or limit is None:
            self.timer = None
            return
        now = loop.time()
        due = self.last_read + limit
        if self.paused or now < due:
            self.timer = loop.call_at(now + limit if self.paused else due, self.check_inactivity)
            return
        self.timer = None
        self._fail(httpx.ReadTimeout(f"no byte from the backend in {limit} s"))

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def _fail(self, error: BaseException) -> None:
        response = self.response
        if response is not None and response._error is None and not response._done:
            response._error = error
            ready = self.headers_ready
            if ready is not None and not ready.done():
                ready.set_exception(error)
            response._wake()
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class WirePool:
    """A backend's keep-alive connections: at most `limit` open, idle ones reused newest first and
    dropped after `keepalive` seconds; a request past the limit waits up to `pool_timeout`."""

    def __init__(self, url: str, limit: int, timeout: httpx.Timeout, keepalive: float | None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = (ssl_context or httpx.create_ssl_context(trust_env=False)) if parts.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if parts.port is None else f"{host}:{parts.port}"
        self.limit = max(1, limit)
        self.connect_timeout = timeout.connect
        self.read_timeout = timeout.read
        self.pool_timeout = timeout.pool
        self.keepalive = keepalive
        self.open = 0
        self.idle: list[_Connection] = []
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the first request's
        self._closed = False

    async def _open_or_wait(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A new connection when under the limit, else the first one given back (or the place of one closed)."""
        if self.open >= self.limit:
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout(self.pool_timeout):
                    handed = await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():  # handed over as we gave up: pass it on
                    handed = waiter.result()
                    if handed is not None:
                        self.give_back(handed, not handed.closed)
                    else:
                        self._slot_freed()
                else:
                    waiter.cancel()  # skipped when its turn comes
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(f"no free connection to {self.origin} within {self.pool_timeout} s") from None
                raise
            if handed is not None:
                return handed
        else:
            self.open += 1
        try:
            return await self._connect(loop)
        except BaseException:
            self._slot_freed()
            raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {self.origin} took over {self.connect_timeout} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        return connection

    def give_back(self, connection: _Connection, reusable: bool) -> None:
        connection.response = None
        connection.headers_ready = None
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        if not reusable or connection.closed or self._closed:
            self._drop(connection)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = self.loop.time()
        self.idle.append(connection)

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._slot_freed()

    def _slot_freed(self) -> None:
        """A connection's slot is free: the first waiter may open one, else the count goes down."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1

    async def close(self) -> None:
        self._closed = True
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()

    async def exchange(self, request: bytes) -> WireResponse:
        """Send `request` and wait for the answer's head. A reused connection the backend closed before
        answering anything is replaced once by a new one (a GET is idempotent)."""
        if self._closed:
            raise RuntimeError("Session is closed")
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        connection = self._take_idle(loop) if self.idle else None  # the common case: no await before the write
        reused = connection is not None
        if connection is None:
            connection = await self._open_or_wait(loop)
        while True:
            response = WireResponse(connection)
            connection.response = response
            ready = connection.headers_ready = loop.create_future()
            connection.last_read = loop.time()
            transport = connection.transport
            try:
                if transport is None or transport.is_closing():
                    raise httpx.RemoteProtocolError("the connection closed before the request was sent")
                transport.write(request)
                if self.read_timeout is not None:  # until the body is complete or given up (`give_back` cancels it)
                    connection.timer = loop.call_at(connection.last_read + self.read_timeout, connection.check_inactivity)
                await ready
            except (httpx.RemoteProtocolError, httpx.ReadError):
                response.release()
                if reused and not response.status and not response._raw:
                    reused = False  # the backend had closed it while idle, before answering: once more, on a new one
                    connection = self._take_idle(loop) if self.idle else None
                    if connection is None:
                        connection = await self._open_or_wait(loop)
                    continue
                raise
            except BaseException:
                response.release()  # cancelled or timed out: the connection's state is unknown, so it is closed
                raise
            return response

    def _take_idle(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        idle = self.idle
        while idle:
            connection = idle.pop()
            if not connection.closed and (self.keepalive is None or loop.time() - connection.idle_since < self.keepalive):
                return connection
            self._drop(connection)
        return None


def _unsendable(text: str) -> bool:
    """A line break or NUL would end the request line or a header early (header injection)."""
    return "\n" in text or "\r" in text or "\0" in text


def _header_block(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if _unsendable(name) or _unsendable(value) or ":" in name or not name.strip():
            raise httpx.LocalProtocolError(f"a header that cannot be sent: {name!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("utf-8")


def _status(response: WireResponse) -> int:
    return response.status


def _retry_after(response: WireResponse) -> str | None:
    value: str | None = response.headers.get("retry-after")
    return value


async def _discard(response: WireResponse) -> None:
    response.release()


class WireGet:
    """GETs on a `WirePool`, with the httpx client's headers and the backend's retries and breaker:
    the interface `_http._get_fast` uses."""

    def __init__(self, pool: WirePool, headers: Mapping[str, str], resilience: Resilience) -> None:
        self.pool = pool
        # httpx's default headers + ours, as httpx would send them; Host first, as every client does.
        self._defaults = {name.lower(): (name, value) for name, value in headers.items() if name.lower() != "host"}
        host = pool.host_header
        self._host_line = b"Host: " + (host.encode("ascii") if host.isascii() else host.encode("idna")) + b"\r\n"
        self._block = self._host_line + _header_block(dict(self._defaults.values())) + b"\r\n"
        # The block for each set of a request's own headers (Loki's encoding flags, a tenant), encoded once.
        self._blocks: dict[tuple[tuple[str, str], ...], bytes] = {}
        self.resilience = resilience

    def _request(self, url: str, headers: Mapping[str, str] | None) -> bytes:
        origin = self.pool.origin
        if not url.startswith(origin):
            raise ValueError(f"{url!r} is not on {origin}")
        target = url[len(origin):] or "/"
        if _unsendable(target) or " " in target:
            raise httpx.LocalProtocolError(f"a request target that cannot be sent: {target!r}")
        head = b"GET " + target.encode("ascii") + b" HTTP/1.1\r\n"
        if not headers:
            return head + self._block
        key = tuple(headers.items())
        block = self._blocks.get(key)
        if block is None:
            merged = dict(self._defaults)
            for name, value in headers.items():  # case-insensitive, a request's header replaces the default
                merged[name.lower()] = (name, value)
            block = self._host_line + _header_block(dict(merged.values())) + b"\r\n"
            if len(self._blocks) < _BLOCKS_KEPT:
                self._blocks[key] = block
        return head + block

    async def get(self, url: str, headers: Mapping[str, str] | None, max_bytes: int, too_large: Callable[[], Exception],
                  spool_above: int | None = None) -> tuple[WireResponse, bytearray | Spooled]:
        """GET `url` (already encoded: `_http._url_text`) and read its body, raising `too_large()`
        past `max_bytes`. A 200 whose body reaches `spool_above` bytes is written to a file as it arrives."""
        request = self._request(url, headers)
        pool = self.pool
        response = await self.resilience.send(lambda: pool.exchange(request), _status, _retry_after, _discard)
        try:
            spool_at = spool_above if response.status == 200 else None
            if response._done and response._decoder is None and not response._error and spool_at is None:
                body = response._raw  # the whole answer came with its head: the common case
                response._raw = bytearray()
                if len(body) > max_bytes:
                    raise too_large()
                return response, body
            body = bytearray()
            if spool_at is not None and (response.content_length or 0) >= spool_at:
                return response, await spool(body, response.read_chunk, max_bytes, too_large)
            while chunk := await response.read_chunk():
                if len(body) + len(chunk) > max_bytes:
                    raise too_large()
                body += chunk
                if spool_at is not None and len(body) >= spool_at:  # chunked, and big after all
                    return response, await spool(body, response.read_chunk, max_bytes, too_large)
            return response, body
        finally:
            response.release()
