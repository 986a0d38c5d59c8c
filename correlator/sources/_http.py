"""The one I/O boundary shared by the three backends: client factory + error mapping.

httpx's timeouts measure inactivity per operation; a server trickling one byte a second
never trips them, so callers also wrap each source in an overall deadline
(`asyncio.timeout`) and bodies are read in chunks against a byte cap.
"""

from __future__ import annotations

import base64
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from correlator.config import _SourceCommon
from correlator.errors import SourceError, SourceProtocolError, SourceTimeout, SourceUnavailable
from correlator.gcpause import gc_paused
from correlator.sources._aiohttp import AiohttpTransport, SharedSession
from correlator.sources._resilience import BreakerOpen, CircuitBreaker, Resilience, ResilientTransport, RetryPolicy
from correlator.sources._spool import Spooled, SpoolFailed, discard, spool
from correlator.sources._wire import WireGet, WirePool

__all__ = ["HttpAnswer", "ResponseTooLarge", "absolute_url", "get", "make_client", "map_source_errors", "not_json",
           "parse_json"]

USER_AGENT = "correlator/0.1"


class ResponseTooLarge(SourceProtocolError):
    """The body passed `max_response_bytes`; the rest was not read."""

    truncated = True


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes | bytearray  # empty when `spooled`
    content_type: str
    headers: Mapping[str, str]
    spooled: Spooled | None = None  # a 200 over `get`'s `spool_above`: the body is in this file, the caller's to remove

    def text(self, limit: int = 300) -> str:
        text = self.body.decode("utf-8", "replace").strip()
        return text if len(text) <= limit else text[:limit] + "…"


class BackendClient(httpx.AsyncClient):
    """An httpx client whose GETs through `get` go straight to our lean HTTP/1.1 client (`fast`, _wire.py).

    httpx stays the public type: it holds the settings (base URL, headers, timeouts), it is what
    tests hand a `httpx.MockTransport` to, and `client.get(...)` works for ad-hoc callers. It is
    off the hot path: its request/response models, URL parser and the httpx-aiohttp adapter cost
    ~0.8 ms of CPU per correlation (bench P3). Without `fast` (an injected transport), `get`
    still skips httpx's auth flow, redirect loop, cookie jar and log line (6 % of CPU in P3).
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, fast: WireGet | None = None,
                 session: SharedSession | None = None, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self.backend_transport = transport
        self.fast = fast
        self._session = session
        self.base = str(self.base_url).rstrip("/")  # normalised by httpx once, then reused verbatim

    async def aclose(self) -> None:
        await super().aclose()
        await self._close_session()

    async def __aexit__(self, *exc_info: Any) -> None:  # httpx's own does not call aclose()
        await super().__aexit__(*exc_info)
        await self._close_session()

    async def _close_session(self) -> None:
        if self.fast is not None:
            await self.fast.pool.close()
        if self._session is not None:  # closed already when the httpx path used it; closing is idempotent
            await self._session.close()


def make_client(settings: _SourceCommon, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """One long-lived client per backend: keep-alive pool, explicit timeouts, auth, headers.

    `transport` (tests): httpx's path over it, with the same retries and breaker; else aiohttp."""
    headers = {"User-Agent": USER_AGENT, **settings.headers}
    if settings.bearer_token:
        headers["Authorization"] = f"Bearer {settings.bearer_token}"
    elif settings.basic_auth_user is not None:
        # What httpx.BasicAuth sends on every request, computed once (a header, not an auth flow).
        pair = f"{settings.basic_auth_user}:{settings.basic_auth_password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    t = settings.timeout
    timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.pool)
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds) if settings.breaker_failures else None
    resilience = Resilience(RetryPolicy(settings.retry_attempts, settings.retry_base_seconds), breaker)
    session = None if transport is not None else SharedSession(limits, timeout)
    # aiohttp's pool, not httpcore's: httpcore's cost 1.8 ms of CPU per request under load (it
    # probes every pooled socket on each request), aiohttp's 0.3 ms (bench P3).
    inner = transport or AiohttpTransport(limits=limits, trust_env=False, client=session)
    client = BackendClient(
        base_url=settings.url.rstrip("/"),
        headers=headers,
        timeout=timeout,
        transport=ResilientTransport(inner, resilience.policy, breaker, resilience),
        follow_redirects=False,
        session=session,
    )
    if session is not None:
        # The production GETs: our own HTTP/1.1 client (_wire.py; a quarter of aiohttp's CPU per GET, bench P3),
        # with httpx's default headers + ours, as sent before, and only the encodings it decodes.
        pool = WirePool(client.base, settings.max_connections, timeout, limits.keepalive_expiry)
        client.fast = WireGet(pool, {**client.headers, "Accept-Encoding": "gzip, deflate"}, resilience)
    return client


@asynccontextmanager
async def map_source_errors(source: str, what: str) -> AsyncIterator[None]:
    """Translate httpx's exceptions into the correlator's tree, naming source and request."""
    try:
        yield
    except Exception as exc:
        mapped = as_source_error(exc, source, what)
        if mapped is exc:
            raise
        raise mapped from None


def as_source_error(exc: Exception, source: str, what: str) -> Exception:
    """The SourceError an httpx exception means (anything else: itself)."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, BreakerOpen):
        return SourceUnavailable(source, f"{what} not attempted: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return SourceTimeout(source, f"{type(exc).__name__} on {what}")
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError, httpx.ProxyError)):
        return SourceUnavailable(source, f"cannot reach {what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return SourceProtocolError(source, f"broken HTTP answer on {what}: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return SourceUnavailable(source, f"{type(exc).__name__} on {what}: {exc}")
    return exc


def absolute_url(client: httpx.AsyncClient, path: str, params: Mapping[str, str] | None) -> httpx.URL:
    """base_url + path + query, encoded once. httpx's own `params=` merge re-parses the URL
    in pure Python several times (75 µs per Loki query; this: 25 µs; bench P3)."""
    return httpx.URL(_url_text(str(client.base_url).rstrip("/"), path, params))


def _url_text(base: str, path: str, params: Mapping[str, str] | None) -> str:
    if params:
        return base + path + "?" + "&".join(_quote(k) + "=" + _quote(v) for k, v in params.items())
    return base + path


# `urllib.parse.quote(text, safe="")` as one C-level translate: quote() builds the answer one
# byte at a time in Python (17 → 9 µs per Loki query; tests/sources/test_transport.py pins the equality).
_PERCENT = {byte: chr(byte) if chr(byte) in string.ascii_letters + string.digits + "_.-~" else f"%{byte:02X}"
            for byte in range(256)}


def _quote(text: str) -> str:
    if text.isascii() and text.isalnum():  # names, numbers: nothing to escape
        return text
    return text.encode().decode("latin-1").translate(_PERCENT)


def get(
    client: httpx.AsyncClient,
    source: str,
    path: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = 64 * 1024 * 1024,
    spool_above: int | None = None,
) -> Coroutine[Any, Any, HttpAnswer]:
    """GET `path`, reading at most `max_bytes` of body; any status is returned, not raised. (Await it: a plain
    function handing back the path's coroutine, one coroutine fewer per backend call; bench P3.) A 200 whose
    body reaches `spool_above` bytes goes to a file as it arrives (`HttpAnswer.spooled`; _spool.py)."""
    if isinstance(client, BackendClient) and client.fast is not None:
        return _get_fast(client, client.fast, source, path, params, headers, max_bytes, spool_above)
    return _get_httpx(client, source, path, params, headers, max_bytes, spool_above)


async def _get_httpx(client: httpx.AsyncClient, source: str, path: str, params: Mapping[str, str] | None,
                     headers: Mapping[str, str] | None, max_bytes: int, spool_above: int | None = None) -> HttpAnswer:
    """`get` through httpx: clients with an injected transport (tests' `httpx.MockTransport`)."""
    def too_large() -> Exception:
        return ResponseTooLarge(source, f"GET {path}: body larger than {max_bytes} bytes; not read further")

    spooled: Spooled | None = None
    try:
        async with map_source_errors(source, f"GET {path}"):
            async with _send(client, absolute_url(client, path, params), headers) as response:
                # One growing buffer, not chunks joined at the end: the join held the body twice
                # (a 64 MB answer: 128 MB for a moment; bench P5). The parsers read bytearrays as bytes.
                body = bytearray()
                chunks = response.aiter_bytes()
                spool_at = spool_above if response.status_code == 200 else None
                async for chunk in chunks:
                    if len(body) + len(chunk) > max_bytes:
                        raise too_large()
                    body += chunk
                    if spool_at is not None and len(body) >= spool_at:
                        spooled = await _spooled(source, path, body, lambda: anext(chunks, b""), max_bytes, too_large)
                        return HttpAnswer(response.status_code, b"", response.headers.get("content-type", ""),
                                          response.headers, spooled)
                return HttpAnswer(
                    status=response.status_code,
                    body=body,
                    content_type=response.headers.get("content-type", ""),
                    headers=response.headers,
                )
    except BaseException:
        if spooled is not None:  # cancelled while the response closed: the file would have no owner
            discard(spooled)
        raise


async def _get_fast(client: BackendClient, fast: WireGet, source: str, path: str, params: Mapping[str, str] | None,
                    headers: Mapping[str, str] | None, max_bytes: int, spool_above: int | None = None) -> HttpAnswer:
    """`get` on our own client (_wire.py): the same answer, the same errors, the same byte cap."""
    def too_large() -> Exception:
        return ResponseTooLarge(source, f"GET {path}: body larger than {max_bytes} bytes; not read further")

    try:
        response, body = await fast.get(_url_text(client.base, path, params), headers, max_bytes, too_large, spool_above)
    except SpoolFailed as exc:
        raise SourceError(source, f"GET {path}: {exc}") from None
    except Exception as exc:
        mapped = as_source_error(exc, source, f"GET {path}")
        if mapped is exc:
            raise
        raise mapped from None
    if isinstance(body, Spooled):
        return HttpAnswer(response.status, b"", response.headers.get("Content-Type", ""), response.headers, body)
    return HttpAnswer(status=response.status, body=body, content_type=response.headers.get("Content-Type", ""),
                      headers=response.headers)


async def _spooled(source: str, path: str, first: bytearray, read: Callable[[], Awaitable[bytes]], max_bytes: int,
                   too_large: Callable[[], Exception]) -> Spooled:
    try:
        return await spool(first, read, max_bytes, too_large)
    except SpoolFailed as exc:
        raise SourceError(source, f"GET {path}: {exc}") from None


@asynccontextmanager
async def _send(client: httpx.AsyncClient, url: httpx.URL, headers: Mapping[str, str] | None) -> AsyncIterator[httpx.Response]:
    """A streamed GET: straight to the transport for our own clients, else through httpx's send."""
    if not isinstance(client, BackendClient):
        async with client.stream("GET", url, headers=headers) as response:
            yield response
        return
    merged = httpx.Headers(client.headers)
    if headers:
        merged.update(headers)
    request = httpx.Request("GET", url, headers=merged, extensions={"timeout": client.timeout.as_dict()})
    response = await client.backend_transport.handle_async_request(request)
    response.request = request
    try:
        yield response
    finally:
        await response.aclose()


def parse_json(source: str, answer: HttpAnswer, what: str) -> Any:
    """Parse by body, never by content type: Jaeger and Loki send JSON as text/plain."""
    try:
        with gc_paused():
            return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise not_json(source, answer, what) from None


def not_json(source: str, answer: HttpAnswer, what: str) -> SourceProtocolError:
    return SourceProtocolError(source, f"{what}: HTTP {answer.status} with a body that is not JSON: {answer.text(120)!r}")
