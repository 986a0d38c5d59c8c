"""httpx's API over aiohttp's pool (httpx-aiohttp) for every request that is not a production GET
(those take our own client, `_wire.py`), with honest exception types.

Why: under bench P3 httpcore's pool cost 1.8 ms of CPU per request (it probes every pooled
socket on each request: `has_expired` → `getpeername`); aiohttp's pool under the same httpx
client costs 0.3 ms. The sources, the retry layer and the tests keep speaking httpx.

Why the subclass: httpx-aiohttp 0.2 maps a refused connection to `ConnectTimeout` (its table
is searched for the most specific *target*, not source) and lets some aiohttp errors (an
invalid HTTP answer) escape untranslated. A user reading `sources.loki.status` must see
"unavailable" for a dead port and "bad_response" for garbage, so the mapping is redone here,
from the aiohttp exception each failure carries, both for the request and for the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import httpx_aiohttp

__all__ = ["AiohttpTransport", "SharedSession"]


def _translate(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError | None:
    """The httpx error httpcore would have raised for the same failure, or None if not ours."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    message = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(cause, (aiohttp.ServerTimeoutError, TimeoutError)):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(cause, aiohttp.ClientOSError):
        return httpx.ReadError(message, request=request)
    if isinstance(cause, aiohttp.ClientError):
        return httpx.TransportError(message, request=request)
    if isinstance(exc, httpx.TransportError):
        return exc
    return None


@contextmanager
def _httpx_errors(request: httpx.Request | None) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        translated = _translate(exc, request)
        if translated is None or translated is exc:
            raise
        raise translated from exc


class _TranslatedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner, self._request = inner, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors(self._request):
            await self._inner.aclose()


class AiohttpTransport(httpx_aiohttp.AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _httpx_errors(request):
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream, request)
        return response


class SharedSession:
    """One aiohttp ClientSession per backend for the httpx transport, made on first use (it needs the running
    loop; a client whose GETs all take `_wire.py` never makes it)."""

    def __init__(self, limits: httpx.Limits, timeout: httpx.Timeout) -> None:
        self._limits = limits
        # What httpx-aiohttp would build; the default for requests that pass none.
        self._timeout = aiohttp.ClientTimeout(sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __call__(self) -> aiohttp.ClientSession:
        if self._closed:
            # A session made now would never be closed (its pool, its sockets): fail as aiohttp's closed one does.
            raise RuntimeError("Session is closed")
        if self._session is None:
            limits = self._limits
            # As httpx-aiohttp builds it from the same limits (aiohttp's default of 100 when None).
            connector = aiohttp.TCPConnector(
                limit=100 if limits.max_connections is None else limits.max_connections,
                keepalive_timeout=limits.keepalive_expiry, ssl=httpx.create_ssl_context(trust_env=False))
            # No cookie jar: backends set none we should send back (httpx's client kept one, unused).
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
