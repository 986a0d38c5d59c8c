"""Big answers are sent by the kernel from the worker's file (file_answer.py, bench P8): the bytes a client
gets are the file's, the connection stays usable, and a client that goes away mid-answer leaks nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from correlator import file_answer
from correlator.file_answer import FileAnswer

SIZE = 12 * 1024 * 1024  # far more than a socket's buffer: the thread waits for the client many times


def app_for(path: Path, data: bytes) -> web.Application:
    flag = data.index(b"false")

    async def whole(_request: web.Request) -> web.StreamResponse:
        return FileAnswer(str(path), [(0, len(data))], status=200, content_type="application/json")

    async def hit(_request: web.Request) -> web.StreamResponse:  # as a cache hit: `false` becomes `true`
        return FileAnswer(str(path), [(0, flag), b"true", (flag + 5, len(data))], status=200, content_type="application/json")

    app = web.Application()
    app.router.add_get("/whole", whole)
    app.router.add_get("/hit", hit)
    return app


def answer_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = b'{"cached":false,"spans":"' + os.urandom(SIZE).hex().encode()[:SIZE] + b'"}'
    path = tmp_path / "answer.json"
    path.write_bytes(data)
    return path, data


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_client_gets_the_files_bytes_and_the_connection_stays_usable(aiohttp_client: Any, tmp_path: Path,
                                                                                 monkeypatch: Any) -> None:
    path, data = answer_file(tmp_path)
    sends: list[int] = []
    send = file_answer._send

    def counted(fd: int, out: int, pieces: Any, stop: Any) -> None:
        sends.append(out)
        send(fd, out, pieces, stop)

    monkeypatch.setattr(file_answer, "_send", counted)
    client = await aiohttp_client(app_for(path, data))

    for _ in range(2):  # the second answer on the same kept-alive connection
        response = await client.get("/whole")
        assert response.status == 200 and response.headers["Content-Length"] == str(len(data))
        assert await response.read() == data
        response = await client.get("/hit")
        assert await response.read() == data.replace(b'"cached":false', b'"cached":true', 1)
    head = await client.head("/whole")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data)) and await head.read() == b""
    assert client.server.handler.connections and len(client.session.connector._conns) == 1  # one connection, reused
    assert len(sends) == 4  # each body went by sendfile, from a thread (not through aiohttp's writer)


async def test_a_client_that_goes_away_mid_answer_leaks_no_descriptor_or_thread(aiohttp_client: Any, tmp_path: Path) -> None:
    """As `serve` runs it (handler_cancellation): the request is cancelled, the thread stops and closes what it opened."""
    path, data = answer_file(tmp_path)
    client = await aiohttp_client(app_for(path, data), server_kwargs={"handler_cancellation": True})
    await (await client.get("/whole")).read()  # the server's lazy parts set up before counting
    before = open_fds()

    for _ in range(3):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read(4096)).startswith(b"HTTP/1.1 200")
        writer.transport.abort()  # gone with most of the answer unread
        assert (await client.head("/whole")).status == 200  # a HEAD opens the file too, and sends none of it

    for _ in range(100):  # the threads notice (the socket errors) and close what they opened, bounded
        if open_fds() <= before and not any(t.name == "correlator-sendfile" for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
    assert open_fds() <= before
    assert not any(t.name == "correlator-sendfile" for t in threading.enumerate())
    assert await (await client.get("/whole")).read() == data  # the server goes on answering


async def test_a_file_shorter_than_its_answer_ends_the_connection_instead_of_hanging(aiohttp_client: Any,
                                                                                    tmp_path: Path) -> None:
    path, data = answer_file(tmp_path)
    client = await aiohttp_client(app_for(path, data))
    with open(path, "r+b") as file:  # the answer's length was promised in the headers; the bytes are not all there
        file.truncate(SIZE // 2)

    response = await client.get("/whole")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.read(), 10)
    path.write_bytes(data)
    assert await (await client.get("/whole")).read() == data  # a new connection: the server goes on answering
