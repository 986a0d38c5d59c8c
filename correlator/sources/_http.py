"""The one I/O boundary shared by the three backends: client factory + error mapping.

httpx's timeouts measure inactivity per operation; a server trickling one byte a second
never trips them, so callers also wrap each source in an overall deadline
(`asyncio.timeout`) and bodies are read in chunks against a byte cap.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from correlator.config import _SourceCommon
from correlator.errors import SourceError, SourceProtocolError, SourceTimeout, SourceUnavailable
from correlator.gcpause import gc_paused
from correlator.sources._aiohttp import AiohttpTransport
from correlator.sources._resilience import BreakerOpen, CircuitBreaker, ResilientTransport, RetryPolicy
from correlator.turns import my_turn

__all__ = ["HttpAnswer", "ResponseTooLarge", "absolute_url", "get", "make_client", "map_source_errors", "not_json",
           "parse_json"]

USER_AGENT = "correlator/0.1"


class ResponseTooLarge(SourceProtocolError):
    """The body passed `max_response_bytes`; the rest was not read."""

    truncated = True


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes | bytearray
    content_type: str
    headers: Mapping[str, str]

    def text(self, limit: int = 300) -> str:
        text = self.body.decode("utf-8", "replace").strip()
        return text if len(text) <= limit else text[:limit] + "…"


class BackendClient(httpx.AsyncClient):
    """An httpx client that keeps its transport stack in reach, for `get`'s direct send.

    Why: `AsyncClient.send` runs an auth flow, a redirect loop, a cookie jar and a log line per
    request; a backend client needs none of them (auth is a fixed header, redirects are
    refused, backends set no cookies), and they were 6 % of the server's CPU in bench P3.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self.backend_transport = transport


def make_client(settings: _SourceCommon, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """One long-lived client per backend: keep-alive pool, explicit timeouts, auth, headers."""
    headers = {"User-Agent": USER_AGENT, **settings.headers}
    if settings.bearer_token:
        headers["Authorization"] = f"Bearer {settings.bearer_token}"
    elif settings.basic_auth_user is not None:
        # What httpx.BasicAuth sends on every request, computed once (a header, not an auth flow).
        pair = f"{settings.basic_auth_user}:{settings.basic_auth_password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    t = settings.timeout
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)
    # httpx's API over aiohttp's connection pool: httpcore's pool cost 1.8 ms of CPU per request
    # under load (it probes every pooled socket on each request), aiohttp's 0.3 ms (bench P3).
    inner = transport or AiohttpTransport(limits=limits, trust_env=False)
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds) if settings.breaker_failures else None
    resilient = ResilientTransport(inner, RetryPolicy(settings.retry_attempts, settings.retry_base_seconds), breaker)
    return BackendClient(
        base_url=settings.url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.pool),
        transport=resilient,
        follow_redirects=False,
    )


@asynccontextmanager
async def map_source_errors(source: str, what: str) -> AsyncIterator[None]:
    """Translate httpx's exceptions into the correlator's tree, naming source and request."""
    try:
        yield
    except SourceError:
        raise
    except BreakerOpen as exc:
        raise SourceUnavailable(source, f"{what} not attempted: {exc}") from None
    except httpx.TimeoutException as exc:
        raise SourceTimeout(source, f"{type(exc).__name__} on {what}") from None
    except (httpx.ConnectError, httpx.NetworkError, httpx.ProxyError) as exc:
        raise SourceUnavailable(source, f"cannot reach {what}: {type(exc).__name__}: {exc}") from None
    except (httpx.RemoteProtocolError, httpx.DecodingError) as exc:
        raise SourceProtocolError(source, f"broken HTTP answer on {what}: {exc}") from None
    except httpx.HTTPError as exc:
        raise SourceUnavailable(source, f"{type(exc).__name__} on {what}: {exc}") from None


def absolute_url(client: httpx.AsyncClient, path: str, params: Mapping[str, str] | None) -> httpx.URL:
    """base_url + path + query, encoded once. httpx's own `params=` merge re-parses the URL
    in pure Python several times (75 µs per Loki query; this: 25 µs; bench P3)."""
    url = str(client.base_url).rstrip("/") + path
    if params:
        url += "?" + urlencode(params, quote_via=quote)
    return httpx.URL(url)


async def get(
    client: httpx.AsyncClient,
    source: str,
    path: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = 64 * 1024 * 1024,
) -> HttpAnswer:
    """GET `path`, reading at most `max_bytes` of body; any status is returned, not raised."""
    async with map_source_errors(source, f"GET {path}"):
        async with _send(client, absolute_url(client, path, params), headers) as response:
            # One growing buffer, not chunks joined at the end: the join held the body twice
            # (a 64 MB answer: 128 MB for a moment; bench P5). The parsers read bytearrays as bytes.
            body = bytearray()
            async for chunk in response.aiter_bytes():
                if len(body) + len(chunk) > max_bytes:
                    raise ResponseTooLarge(source, f"GET {path}: body larger than {max_bytes} bytes; not read further")
                body += chunk
            answer = HttpAnswer(
                status=response.status_code,
                body=body,
                content_type=response.headers.get("content-type", ""),
                headers=response.headers,
            )
    # The caller parses the answer in the same step, without awaiting: one heavy step per loop turn (turns.py).
    await my_turn()
    return answer


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
