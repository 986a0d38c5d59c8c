"""Production GETs go to our own HTTP/1.1 client (`_wire.WireGet`), tests' `httpx.MockTransport` through
httpx: the same scripted backend behind each, the same answers, errors, retries and headers.

Each test runs twice: `wire` is a real loopback server (aiohttp's) reached by the fast path, `httpx` the
same handler behind a mock transport (the path every other source test takes).
"""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from correlator.config import load_settings
from correlator.errors import SourceError, SourceHTTPError, SourceUnavailable
from correlator.sources._http import BackendClient, get, make_client


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path_qs: str
    headers: dict[str, str]  # lower-cased names, repeated headers' values joined by ", "


Script = Callable[[int], Answer]  # request number (0-based) → answer


@asynccontextmanager
async def backend_client(kind: str, script: Script, env: dict[str, str] | None = None,
                         ) -> AsyncIterator[tuple[httpx.AsyncClient, list[Seen]]]:
    seen: list[Seen] = []

    def answer(path_qs: str, headers: dict[str, str]) -> Answer:
        seen.append(Seen(path_qs, headers))
        return script(len(seen) - 1)

    def settings_for(url: str) -> Any:
        return load_settings(environ={"CORRELATOR_LOKI_URL": url, "CORRELATOR_LOKI_RETRY_BASE_SECONDS": "0.001",
                                      **(env or {})}).loki

    if kind == "httpx":
        def handle(request: httpx.Request) -> httpx.Response:
            got = answer(request.url.raw_path.decode(), {k: ", ".join(request.headers.get_list(k)) for k in request.headers})
            return httpx.Response(got.status, content=got.body, headers=got.headers)

        async with make_client(settings_for("http://backend:3100/prefix"), httpx.MockTransport(handle)) as client:
            assert isinstance(client, BackendClient) and client.fast is None
            yield client, seen
        return

    async def serve(request: web.Request) -> web.Response:
        got = answer(request.raw_path, {k.lower(): ", ".join(request.headers.getall(k)) for k in request.headers})
        return web.Response(status=got.status, body=got.body, headers=got.headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        # A host name, not an IP: aiohttp's cookie jar ignores cookies from IP addresses anyway.
        async with make_client(settings_for(f"http://localhost:{port}/prefix")) as client:
            assert isinstance(client, BackendClient) and client.fast is not None
            yield client, seen
    finally:
        await runner.cleanup()


both = pytest.mark.parametrize("kind", ["wire", "httpx"])


@both
async def test_5xx_is_retried_and_the_answer_is_the_same(kind: str) -> None:
    script: Script = lambda n: Answer(503, b"busy") if n < 2 else Answer(200, b'{"ok":1}', {"Content-Type": "text/plain"})  # noqa: E731
    async with backend_client(kind, script) as (client, seen):
        answer = await get(client, "loki", "/loki/api/v1/query_range", {"query": '{a="b"} |= "x y"', "limit": "5"})
    assert (answer.status, bytes(answer.body), answer.content_type) == (200, b'{"ok":1}', "text/plain")
    assert answer.headers["content-type"] == "text/plain", "headers are looked up case-insensitively"
    assert len(seen) == 3
    assert seen[0].path_qs == "/prefix/loki/api/v1/query_range?query=%7Ba%3D%22b%22%7D%20%7C%3D%20%22x%20y%22&limit=5"


@both
async def test_the_last_5xx_is_returned_after_the_attempts(kind: str) -> None:
    async with backend_client(kind, lambda n: Answer(502, b"bad gateway")) as (client, seen):
        answer = await get(client, "loki", "/ready")
    assert (answer.status, bytes(answer.body)) == (502, b"bad gateway") and len(seen) == 3


@both
async def test_client_errors_and_redirects_are_answers_not_retried_nor_followed(kind: str) -> None:
    script: Script = lambda n: Answer(302, b"moved", {"Location": "/elsewhere", "Set-Cookie": "s=1"})  # noqa: E731
    async with backend_client(kind, script) as (client, seen):
        first = await get(client, "loki", "/ready")
        await get(client, "loki", "/ready")
    assert (first.status, bytes(first.body)) == (302, b"moved") and len(seen) == 2
    assert "cookie" not in seen[1].headers, "a backend's cookie is not sent back"


@both
async def test_retry_after_is_honoured(kind: str) -> None:
    script: Script = lambda n: Answer(429, b"slow down", {"Retry-After": "1"}) if n == 0 else Answer(200, b"ok")  # noqa: E731
    async with backend_client(kind, script) as (client, seen):
        started = time.perf_counter()
        answer = await get(client, "loki", "/ready")
    assert answer.status == 200 and len(seen) == 2 and time.perf_counter() - started >= 0.95


@both
async def test_an_open_breaker_fails_fast_as_unavailable(kind: str) -> None:
    env = {"CORRELATOR_LOKI_BREAKER_FAILURES": "1", "CORRELATOR_LOKI_RETRY_ATTEMPTS": "1"}
    async with backend_client(kind, lambda n: Answer(500, b"boom"), env) as (client, seen):
        assert (await get(client, "loki", "/ready")).status == 500
        with pytest.raises(SourceUnavailable, match="not attempted: circuit open"):
            await get(client, "loki", "/ready")
    assert len(seen) == 1


@both
async def test_body_cap_is_a_truncated_source_error(kind: str) -> None:
    async with backend_client(kind, lambda n: Answer(200, b"x" * 300_000)) as (client, _seen):
        with pytest.raises(SourceError) as info:
            await get(client, "loki", "/big", max_bytes=100_000)
        assert bytes((await get(client, "loki", "/big", max_bytes=300_000)).body) == b"x" * 300_000
    assert info.value.truncated and "larger than 100000 bytes" in str(info.value)
    assert not isinstance(info.value, SourceHTTPError)


@both
async def test_a_gzip_answer_is_decoded(kind: str) -> None:
    body = b'{"status":"success"}' * 100
    script: Script = lambda n: Answer(200, gzip.compress(body), {"Content-Encoding": "gzip"})  # noqa: E731
    async with backend_client(kind, script) as (client, seen):
        answer = await get(client, "loki", "/ready")
    assert bytes(answer.body) == body
    assert "gzip" in seen[0].headers["accept-encoding"]


@both
@pytest.mark.parametrize("env", [
    {"CORRELATOR_LOKI_BASIC_AUTH_USER": "grafana", "CORRELATOR_LOKI_BASIC_AUTH_PASSWORD": "pä:ss"},
    {"CORRELATOR_LOKI_BEARER_TOKEN": "t0ken"},
], ids=["basic", "bearer"])
async def test_the_same_headers_reach_the_backend(kind: str, env: dict[str, str]) -> None:
    async with backend_client(kind, lambda n: Answer(200, b"ok"), {"CORRELATOR_LOKI_HEADERS": "X-Team=sre", **env}) as (client, seen):
        await get(client, "loki", "/ready", None, {"X-Scope-OrgID": "t1", "x-team": "override"})
        await get(client, "loki", "/ready")
    first, second = seen[0].headers, seen[1].headers
    expected = ("Bearer t0ken" if "CORRELATOR_LOKI_BEARER_TOKEN" in env else
                httpx.BasicAuth("grafana", "pä:ss").auth_flow(httpx.Request("GET", "http://x")).__next__().headers["Authorization"])
    assert first["authorization"] == expected
    assert first["x-scope-orgid"] == "t1" and first["x-team"] == "override", "a request's header replaces the default"
    assert second["x-team"] == "sre" and "x-scope-orgid" not in second, "one request's headers must not leak into the next"
    assert first["user-agent"].startswith("correlator/")
    assert first["accept"] == "*/*"
