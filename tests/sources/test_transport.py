"""The real client stack (httpx over aiohttp's pool) against raw TCP peers that misbehave.

What a user sees in `sources.<name>.status` depends on which exception a wire failure becomes;
httpx-aiohttp alone reports a refused port as a timeout, so each failure is pinned here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from correlator.errors import SourceError, SourceProtocolError, SourceTimeout, SourceUnavailable
from correlator.sources._http import get, make_client

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_peer(handle: Peer) -> AsyncIterator[str]:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:  # the peer's side of each connection, hung or not
            writer.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def fetch(url: str, read_timeout: float = 5.0) -> SourceError | bytes:
    settings = load_settings(environ={"CORRELATOR_LOKI_URL": url, "CORRELATOR_LOKI_RETRY_ATTEMPTS": "1",
                                      "CORRELATOR_LOKI_TIMEOUT_READ": str(read_timeout)}).loki
    async with make_client(settings) as client:
        try:
            return (await get(client, "loki", "/ready")).body
        except SourceError as exc:
            return exc


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_healthy_answer_passes_through_with_keep_alive_reuse() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for _ in range(3):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nready")
            await writer.drain()

    async with raw_peer(handle) as url:
        settings = load_settings(environ={"CORRELATOR_LOKI_URL": url}).loki
        async with make_client(settings) as client:
            bodies = [(await get(client, "loki", "/ready")).body for _ in range(3)]
    assert bodies == [b"ready"] * 3
    assert connections == 1, "sequential requests must reuse one keep-alive connection"


async def test_a_refused_port_is_unavailable_not_a_timeout() -> None:
    outcome = await fetch(f"http://127.0.0.1:{closed_port()}")
    assert isinstance(outcome, SourceUnavailable) and not isinstance(outcome, SourceTimeout)
    assert outcome.status == "unavailable"


@pytest.mark.parametrize("written", [
    b"",  # closes without answering
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",  # not HTTP at all
    b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"status":',  # a body cut short
], ids=["closes without answering", "does not speak HTTP", "body cut short"])
async def test_a_peer_that_breaks_the_protocol_is_a_bad_response(written: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(written)
        await writer.drain()
        writer.close()

    async with raw_peer(handle) as url:
        outcome = await fetch(url)
    assert isinstance(outcome, SourceProtocolError) and outcome.status == "bad_response", outcome
    assert "loki" in str(outcome)


@pytest.mark.parametrize("when", ["before headers", "mid body"])
async def test_silence_past_the_read_timeout_is_a_timeout(when: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if when == "mid body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
            await writer.drain()
        await asyncio.sleep(5)

    async with raw_peer(handle) as url:
        outcome = await fetch(url, read_timeout=0.2)
    assert isinstance(outcome, SourceTimeout), outcome


@pytest.mark.parametrize("base", ["http://loki:3100", "http://gateway/loki-prefix/", "https://h.example:8443/a/b"])
def test_the_pre_encoded_url_means_what_httpx_params_would(base: str) -> None:
    import httpx
    from hypothesis import given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from correlator.sources._http import absolute_url

    client = httpx.AsyncClient(base_url=base)  # only builds URLs: never sends, never opens a socket

    @hsettings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.text(min_size=1), st.text()))
    def same_meaning(params: dict[str, str]) -> None:
        ours = absolute_url(client, "/loki/api/v1/query_range", params)
        theirs = client.build_request("GET", "/loki/api/v1/query_range", params=params).url
        assert (ours.scheme, ours.host, ours.port, ours.path) == (theirs.scheme, theirs.host, theirs.port, theirs.path)
        assert list(ours.params.multi_items()) == list(theirs.params.multi_items()) == list(params.items())

    same_meaning()
    logql = '{service_name=~"a|b"} |= "4bf92f3577b34da6a3ce929d0e0e4736" | trace_id=`x` # & + %'
    assert absolute_url(client, "/q", {"query": logql}).params["query"] == logql


@pytest.mark.parametrize(("env", "expected"), [
    ({"CORRELATOR_LOKI_BASIC_AUTH_USER": "grafana", "CORRELATOR_LOKI_BASIC_AUTH_PASSWORD": "pä:ss"},
     lambda r: httpx.BasicAuth("grafana", "pä:ss").auth_flow(r).__next__().headers["Authorization"]),
    ({"CORRELATOR_LOKI_BEARER_TOKEN": "t0ken"}, lambda _r: "Bearer t0ken"),
])
async def test_backend_credentials_and_headers_reach_the_wire(env: dict[str, str], expected: Any) -> None:
    import httpx

    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "/elsewhere", "Set-Cookie": "s=1"}, text="moved")

    settings = load_settings(environ={"CORRELATOR_LOKI_URL": "http://loki:3100/prefix",
                                      "CORRELATOR_LOKI_HEADERS": "X-Team=sre", **env}).loki
    async with make_client(settings, httpx.MockTransport(handle)) as client:
        first = await get(client, "loki", "/ready", {"q": "a b"}, {"X-Scope-OrgID": "t1"})
        await get(client, "loki", "/ready")
    assert first.status == 302 and first.body == b"moved", "redirects are answers, never followed"
    assert len(seen) == 2
    request = seen[0]
    assert str(request.url) == "http://loki:3100/prefix/ready?q=a%20b"
    assert request.headers["Authorization"] == expected(request)
    assert request.headers["X-Team"] == "sre" and request.headers["X-Scope-OrgID"] == "t1"
    assert request.headers["User-Agent"].startswith("correlator/")
    assert "X-Scope-OrgID" not in seen[1].headers, "one request's headers must not leak into the next"
    assert "cookie" not in seen[1].headers, "a backend's cookie is not sent back"
    assert request.extensions["timeout"]["read"] == settings.timeout.read


def test_the_query_is_encoded_exactly_as_urlencode_with_quote_would() -> None:
    from urllib.parse import quote, urlencode

    from hypothesis import given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from correlator.sources._http import _url_text

    @hsettings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.text(), st.text()))
    def same_bytes(params: dict[str, str]) -> None:
        expected = "http://b/q" + ("?" + urlencode(params, quote_via=quote) if params else "")
        assert _url_text("http://b", "/q", params) == expected

    same_bytes()


async def test_a_closed_client_never_opens_a_new_pool() -> None:
    """Closed before its first request, a client must not make its aiohttp session later (nobody would close
    it: an unclosed session, pool and sockets); a request then fails at once, as on any closed session."""
    settings = load_settings(environ={"CORRELATOR_LOKI_URL": f"http://127.0.0.1:{closed_port()}"}).loki
    client = make_client(settings)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await get(client, "loki", "/ready")
