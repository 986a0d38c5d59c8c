"""What a newcomer meets at the HTTP edge: wrong routes and methods, absurd request lines, an
unknown ID while a backend is down, and one access-log line per request."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from tests.apiclient import TRACE, Backends

UNKNOWN = "0af7651916cd43dd8448eb211c80319c"


async def raw_request(port: int, request_line: bytes) -> tuple[bytes, bytes]:
    """Send one raw HTTP/1.1 request; return (head, body) of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_line + b"\r\nHost: test\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


async def test_a_40kb_request_line_is_414_problem_json_without_echo(make_client: Any, backends: Backends) -> None:
    client = await make_client()
    junk = b"Z" * 40_000
    head, body = await raw_request(client.server.port, b"GET /correlate/" + junk + b" HTTP/1.1")
    assert head.startswith(b"HTTP/1.1 414")
    assert b"application/problem+json" in head
    assert b"ZZZZ" not in body and len(body) < 500  # nothing of the input comes back
    assert json.loads(body)["status"] == 414
    assert backends.requests == []


async def test_405_carries_allow_and_says_what_the_route_answers(make_client: Any) -> None:
    client = await make_client()
    response = await client.delete("/healthz")
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
    body = await response.json()
    assert "/healthz answers GET, HEAD, not DELETE" in body["detail"]


async def test_404_route_detail_names_the_routes(make_client: Any) -> None:
    client = await make_client()
    response = await client.get("/correlat/" + TRACE)
    assert response.status == 404 and response.content_type == "application/problem+json"
    detail = (await response.json())["detail"]
    assert "404: Not Found" not in detail and "/correlate/{trace_id}" in detail


async def test_unknown_id_with_loki_down_says_so_plainly(make_client: Any, backends: Backends) -> None:
    backends.jaeger = lambda r: httpx.Response(404, json={"error": {"code": 5, "message": "trace not found"}})
    backends.loki = lambda r: httpx.Response(503, text="ingester unavailable")
    backends.prometheus = lambda r: httpx.Response(200, json={"status": "success", "data": []})
    client = await make_client(load_settings(environ={"CORRELATOR_LOKI_RETRY_ATTEMPTS": "1"}))
    response = await client.get(f"/correlate/{UNKNOWN}")
    assert response.status == 200  # 404 only when every source answered
    body = await response.json()
    note = body["availability"]
    assert note.startswith("not found in Jaeger and Prometheus; Loki could not be asked")
    assert "may still exist there" in note and "503" in note
    text = await (await client.get(f"/correlate/{UNKNOWN}?format=text")).text()
    assert "Note: not found in Jaeger and Prometheus; Loki could not be asked" in text


async def test_every_source_answering_leaves_no_note(make_client: Any) -> None:
    client = await make_client()
    body = await (await client.get(f"/correlate/{TRACE}")).json()
    assert body["availability"] is None


async def test_access_log_one_json_ready_line_per_request(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client()
    with caplog.at_level(logging.INFO, logger="correlator.access"):
        await client.get(f"/correlate/{TRACE}")
        await client.get("/correlate/not-hex")
    records = [r for r in caplog.records if r.name == "correlator.access"]
    assert [(r.method, r.route, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "/correlate/{trace_id}", 200), ("GET", "/correlate/{trace_id}", 400)]
    assert all(r.ms >= 0 for r in records)  # type: ignore[attr-defined]


async def test_access_log_off_by_one_setting(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client(load_settings(environ={"CORRELATOR_SERVER_ACCESS_LOG": "false"}))
    with caplog.at_level(logging.INFO, logger="correlator.access"):
        await client.get("/healthz")
    assert [r for r in caplog.records if r.name == "correlator.access"] == []
