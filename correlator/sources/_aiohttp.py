"""aiohttp's client under each backend: the fast path production GETs take (`AiohttpGet`), and
httpx's API over the same pool (httpx-aiohttp) for everything else, both with honest exception types.

Why the fast path: with httpx's request/response models, URL parser and the transport adapter in
between, a small correlation's four backend GETs cost ~0.8 ms more CPU than aiohttp's own
client (bench P3; docs/performance-p3.md). `AiohttpGet` sends on the backend's one shared
ClientSession with the same headers, timeouts, retries and breaker, and raises the same httpx
exception types, so `_http.map_source_errors` and everything above it cannot tell the two apart.

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

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn

import aiohttp
import httpx
import httpx_aiohttp
from multidict import CIMultiDict
from yarl import URL

from correlator.sources._resilience import Resilience
from correlator.sources._spool import Spooled, spool

__all__ = ["AiohttpGet", "AiohttpTransport", "SharedSession"]


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
    """One aiohttp ClientSession per backend, made on first use (it needs the running loop) and
    shared by the fast path and the httpx transport, so a backend has one pool and one limit."""

    def __init__(self, limits: httpx.Limits, timeout: httpx.Timeout) -> None:
        self._limits = limits
        # What httpx-aiohttp would build; the default for requests that pass none (the fast path).
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


def _status(response: aiohttp.ClientResponse) -> int:
    return response.status


def _retry_after(response: aiohttp.ClientResponse) -> str | None:
    return response.headers.get("Retry-After")


async def _discard(response: aiohttp.ClientResponse) -> None:
    response.release()


class AiohttpGet:
    """GETs on aiohttp's own client, with the httpx client's headers and the backend's retries and breaker."""

    def __init__(self, session: SharedSession, headers: Mapping[str, str], resilience: Resilience) -> None:
        self._session = session
        self._headers = CIMultiDict(headers)
        self.resilience = resilience

    async def get(self, url: str, headers: Mapping[str, str] | None, max_bytes: int, too_large: Callable[[], Exception],
                  spool_above: int | None = None) -> tuple[aiohttp.ClientResponse, bytearray | Spooled]:
        """GET `url` (already encoded: `_http._url_text`) and read its body, raising `too_large()`
        past `max_bytes`. Failures raise httpx's exception types (`_translate`), as the transport does.
        A 200 whose body reaches `spool_above` bytes is written to a file as it arrives (`_spool`)."""
        merged = self._headers
        if headers:
            merged = CIMultiDict(merged)
            merged.update(headers)  # case-insensitive, as httpx.Headers.update
        target = URL(url, encoded=True)
        session = self._session()

        async def attempt() -> aiohttp.ClientResponse:
            try:
                return await session.get(target, headers=merged, allow_redirects=False)
            except Exception as exc:
                _reraise(exc)

        response = await self.resilience.send(attempt, _status, _retry_after, _discard)
        try:
            content = response.content
            body = bytearray()
            spool_at = spool_above if response.status == 200 else None
            if spool_at is not None and (response.content_length or 0) >= spool_at:
                return response, await spool(body, content.readany, max_bytes, too_large)
            while chunk := await content.readany():  # what has arrived: a small answer in one step
                if len(body) + len(chunk) > max_bytes:
                    raise too_large()
                body += chunk
                if spool_at is not None and len(body) >= spool_at:  # chunked, and big after all
                    return response, await spool(body, content.readany, max_bytes, too_large)
        except Exception as exc:
            _reraise(exc)
        finally:
            response.release()
        return response, body


def _reraise(exc: Exception) -> NoReturn:
    """Raise `exc` as httpx would have raised it (`_translate`), else as it is."""
    translated = _translate(exc, None)
    if translated is None or translated is exc:
        raise exc
    raise translated from exc
