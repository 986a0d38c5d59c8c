"""The production GET client (`_wire.py`) against raw TCP peers: what its pool, its timeouts and its
reading of HTTP/1.1 must do beyond what `test_transport.py` and `test_fast_path.py` already pin
(those run every answer, error and header case through it and through httpx alike)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from typing import Any

import httpx
import pytest
from aiohttp import web

from correlator.config import load_settings
from correlator.errors import SourceError, SourceProtocolError, SourceTimeout, SourceUnavailable
from correlator.sources._http import BackendClient, get, make_client
from correlator.sources._resilience import Resilience, RetryPolicy
from correlator.sources._wire import WireGet, WirePool
from tests.sources.test_transport import raw_peer, read_request


def client_for(url: str, **env: str) -> Any:
    environ = {"CORRELATOR_LOKI_URL": url, "CORRELATOR_LOKI_RETRY_ATTEMPTS": "1"}
    environ.update({f"CORRELATOR_LOKI_{name.upper()}": value for name, value in env.items()})
    return make_client(load_settings(environ=environ).loki)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_concurrent_gets_never_open_more_connections_than_the_limit_and_all_are_answered() -> None:
    open_now = peak = connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak, connections
        open_now, connections = open_now + 1, connections + 1
        peak = max(peak, open_now)
        try:
            while True:
                try:
                    await read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                await asyncio.sleep(0.01)
                writer.write(ok(b"answer"))
                await writer.drain()
        finally:
            open_now -= 1

    async with raw_peer(handle) as url, client_for(url, max_connections="3") as client:
        answers = await asyncio.gather(*(get(client, "loki", f"/q{i}") for i in range(30)))
    assert [bytes(a.body) for a in answers] == [b"answer"] * 30
    assert peak == 3 and connections == 3, "waiting requests take over the connections that are free"


async def test_a_request_waiting_past_the_pool_timeout_is_a_timeout_and_the_pool_still_works() -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(ok(b"slow"))
        await writer.drain()
        await read_request(reader)
        writer.write(ok(b"next"))
        await writer.drain()

    async with raw_peer(handle) as url, client_for(url, max_connections="1", timeout_pool="0.2") as client:
        slow = asyncio.ensure_future(get(client, "loki", "/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(SourceTimeout):
            await get(client, "loki", "/waits")
        release.set()
        assert bytes((await slow).body) == b"slow"
        assert bytes((await get(client, "loki", "/next")).body) == b"next", "the one connection is free again"


async def test_a_keep_alive_connection_the_backend_closed_while_idle_is_replaced_without_an_error() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(ok(b"once"))  # keep-alive by HTTP/1.1's default, then the backend drops it anyway
        await writer.drain()
        writer.close()

    async with raw_peer(handle) as url, client_for(url) as client:
        first = await get(client, "loki", "/a")
        await asyncio.sleep(0.05)
        second = await get(client, "loki", "/b")
    assert (bytes(first.body), bytes(second.body), connections) == (b"once", b"once", 2)


@pytest.mark.parametrize("written, expected", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end", b"to the end"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
], ids=["chunked", "ends with the connection", "no content"])
async def test_bodies_framed_every_way_http_allows_are_read_whole(written: bytes, expected: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for at in range(0, len(written), 7):  # in pieces, as a slow network delivers them
            writer.write(written[at:at + 7])
            await writer.drain()
            await asyncio.sleep(0.001)
        if written.startswith(b"HTTP/1.0"):
            writer.close()

    async with raw_peer(handle) as url, client_for(url) as client:
        answer = await get(client, "loki", "/ready")
    assert bytes(answer.body) == expected


async def test_a_request_cancelled_mid_answer_closes_its_connection_and_frees_its_place() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
        if path.endswith(b"/hang"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")  # and the rest never comes
            await writer.drain()
            await asyncio.sleep(10)
            return
        writer.write(ok(b"fine"))
        await writer.drain()

    async with raw_peer(handle) as url, client_for(url, max_connections="1") as client:
        hanging = asyncio.ensure_future(get(client, "loki", "/hang"))
        await asyncio.sleep(0.1)
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        # The half-read connection must not serve the next request (its rest would be read as the next answer).
        answer = await asyncio.wait_for(get(client, "loki", "/after"), 2)
    assert bytes(answer.body) == b"fine"


async def test_a_small_gzip_body_that_inflates_past_the_cap_is_refused_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MB of zeros in ~64 kB

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(bomb, b"Content-Encoding: gzip\r\n"))
        await writer.drain()

    async with raw_peer(handle) as url, client_for(url) as client:
        with pytest.raises(SourceError, match="larger than 1000000 bytes") as info:
            await get(client, "loki", "/bomb", max_bytes=1_000_000)
    assert info.value.truncated


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
async def test_compressed_bodies_arriving_in_pieces_decode_to_the_same_bytes(encoding: str, compress: Any) -> None:
    body = b'{"status":"success","data":[' + b",".join(b'{"n":%d}' % i for i in range(20_000)) + b"]}"
    packed = compress(body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (encoding.encode(), len(packed))
        writer.write(head + packed[:10])  # the head and a piece too short to decode to anything yet
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(packed[10:])
        await writer.drain()

    async with raw_peer(handle) as url, client_for(url) as client:
        answer = await get(client, "loki", "/ready")
    assert bytes(answer.body) == body


async def test_an_encoding_not_asked_for_is_a_bad_response() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"\x1b\x00", b"Content-Encoding: br\r\n"))
        await writer.drain()

    async with raw_peer(handle) as url, client_for(url) as client:
        with pytest.raises(SourceProtocolError):
            await get(client, "loki", "/ready")


async def test_a_header_value_with_a_line_break_is_never_written() -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(ok(b"x"))
        await writer.drain()

    async with raw_peer(handle) as url, client_for(url) as client:
        with pytest.raises(SourceUnavailable, match="cannot be sent"):
            await get(client, "loki", "/ready", None, {"X-Scope-OrgID": "t1\r\nX-Injected: yes"})
    assert seen == [], "nothing reaches the backend"


async def test_a_big_answer_read_slowly_stops_the_socket_instead_of_buffering_it_all() -> None:
    """A consumer slower than the backend (the spool's writes): the client stops reading the socket past
    its high-water mark, so its buffer stays bounded and the body still arrives whole."""
    from correlator.sources import _wire

    size = 24 << 20
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // (1 << 20)):
            writer.write(b"x" * (1 << 20))
            await writer.drain()
        done.set()

    async with raw_peer(handle) as url, client_for(url) as client:
        assert isinstance(client, BackendClient) and client.fast is not None
        pool = client.fast.pool
        response = await pool.exchange(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        largest, total, paused_seen = 0, 0, False
        while chunk := await response.read_chunk():
            largest, total = max(largest, len(chunk)), total + len(chunk)
            await asyncio.sleep(0.02)  # the slow consumer
            paused_seen = paused_seen or response._connection.paused
        response.release()
    assert total == size
    assert largest <= _wire._HIGH_WATER + (1 << 20), "never much more than the high-water mark buffered"
    assert paused_seen, "the socket was paused while the consumer lagged"


@pytest.fixture
def tls() -> Any:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return server, client


async def test_an_https_backend_is_reached_over_tls_with_its_name_checked(tls: Any) -> None:
    server_context, client_context = tls

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=b"over tls " + request.host.encode())

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    settings = load_settings(environ={"CORRELATOR_LOKI_URL": f"https://localhost:{port}"}).loki
    timeout = httpx.Timeout(5.0)
    try:
        trusting = WireGet(WirePool(f"https://localhost:{port}", 2, timeout, 5.0, client_context), {}, Resilience(
            RetryPolicy(1, 0.01), None))
        response, body = await trusting.get(f"https://localhost:{port}/ready", None, 1000, lambda: ValueError("big"))
        assert isinstance(body, bytearray) and (response.status, bytes(body)) == (200, b"over tls localhost:%d" % port)
        await trusting.pool.close()
        # The default trust store does not know the throw-away CA: the backend is unavailable, not silently trusted.
        async with make_client(settings) as client:
            with pytest.raises(SourceUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await get(client, "loki", "/ready")
    finally:
        await runner.cleanup()
