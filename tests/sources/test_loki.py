"""The Loki source against the fake Loki (proven equal to the real recordings), over real sockets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from correlator.config import LokiSettings, load_settings
from correlator.errors import SourceHTTPError, SourceProtocolError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.loki import LokiSource, parse_streams
from tests.conftest import FIXTURES
from tests.fakes.loki import REQUESTS, make_fake_loki_app, scenario

SC = scenario()
T0 = SC["t0_unix_nano"]
WINDOW = Window(T0, T0 + 145_000_000)
SERVICES = ["api-gateway", "auth-service", "course-service"]


async def source_for(aiohttp_server: Any, settings: LokiSettings | None = None, **app_args: Any) -> tuple[LokiSource, Any]:
    server = await aiohttp_server(make_fake_loki_app(**app_args))
    base = settings or load_settings(environ={}).loki
    from dataclasses import replace

    settings = replace(base, url=f"http://127.0.0.1:{server.port}")
    client = make_client(settings)
    return LokiSource(settings, client), server


async def test_finds_every_line_of_the_trace_in_both_homes(aiohttp_server: Any) -> None:
    """6 lines carry the ID in the body, 2 OTLP lines only in structured metadata: all 8 come back once."""
    source, server = await source_for(aiohttp_server)
    result = await source.fetch(parse_trace_id(SC["trace_id"]), WINDOW, SERVICES)
    lines = result.value
    assert len(lines) == 8 and not result.truncated
    assert [line.timestamp_ns for line in lines] == sorted(line.timestamp_ns for line in lines)
    spans = SC["span_ids"]
    assert {line.span_id for line in lines} == {spans["gateway"], spans["auth"], spans["courses"], spans["db"], spans["cache"]}
    otlp = [line for line in lines if line.service == "auth-service"]
    assert {line.level for line in otlp} == {"info", "warn"} and all(line.span_id == spans["auth"] for line in otlp)
    assert all(SC["other_trace_id"] not in line.line for line in lines)
    queries = [r.query["query"] for r in server.app[REQUESTS]]
    assert sorted(queries) == sorted([
        '{service_name=~"api-gateway|auth-service|course-service"} |= "4bf92f3577b34da6a3ce929d0e0e4736"',
        '{service_name=~"api-gateway|auth-service|course-service"} | trace_id="4bf92f3577b34da6a3ce929d0e0e4736"',
    ])
    assert all(r.headers["X-Loki-Response-Encoding-Flags"] == "categorize-labels" for r in server.app[REQUESTS])


async def test_legacy_64bit_id_found_by_its_short_form(aiohttp_server: Any) -> None:
    source, server = await source_for(aiohttp_server)
    result = await source.fetch(parse_trace_id(SC["short_trace_id"]), WINDOW, ["legacy-billing"])
    assert [line.line for line in result.value] == ["2026-11-25 10:00:00 INFO [billing] invoice lookup trace=7b4c2d9e1f3a5b6c"]
    assert '{service_name="legacy-billing"} |= "7b4c2d9e1f3a5b6c"' in [r.query["query"] for r in server.app[REQUESTS]]


async def test_no_match_is_an_empty_success(aiohttp_server: Any) -> None:
    source, _ = await source_for(aiohttp_server)
    result = await source.fetch(parse_trace_id("ffffffffffffffffffffffffffffffff"), WINDOW, SERVICES)
    assert result.value == () and not result.truncated


async def test_limit_reports_truncation(aiohttp_server: Any) -> None:
    settings = load_settings(environ={"CORRELATOR_LOKI_MAX_LINES": "2"}).loki
    source, _ = await source_for(aiohttp_server, settings)
    result = await source.fetch(parse_trace_id(SC["trace_id"]), WINDOW, SERVICES)
    assert result.truncated and len(result.value) == 4  # 2 per lookup, the newest of each


async def test_static_selector_when_services_are_unknown(aiohttp_server: Any) -> None:
    """With only a time hint the services are unknown: the configured static selector is used."""
    source, server = await source_for(aiohttp_server)
    result = await source.fetch(parse_trace_id(SC["trace_id"]), WINDOW, None)
    assert len(result.value) == 8
    assert all(r.query["query"].startswith('{service_name=~".+"}') for r in server.app[REQUESTS])


async def test_tenant_header_is_sent(aiohttp_server: Any) -> None:
    from tests.fakes.loki import recorded_entries

    source, server = await source_for(aiohttp_server, tenants={"team-a": recorded_entries(), "team-b": []})
    tid = parse_trace_id(SC["trace_id"])
    assert len((await source.fetch(tid, WINDOW, SERVICES, tenant="team-a")).value) == 8
    assert (await source.fetch(tid, WINDOW, SERVICES, tenant="team-b")).value == ()
    with pytest.raises(SourceHTTPError, match="401.*no org id.*X-Scope-OrgID"):
        await source.fetch(tid, WINDOW, SERVICES)


async def test_loki_errors_are_named() -> None:
    recording = json.loads((FIXTURES / "recorded/loki/query_range.error_parse.json").read_text())["response"]
    transport = httpx.MockTransport(lambda r: httpx.Response(recording["status"], text=recording["body"],
                                                             headers={"Content-Type": recording["content_type"]}))
    settings = load_settings(environ={"CORRELATOR_LOKI_RETRY_ATTEMPTS": "1"}).loki
    source = LokiSource(settings, make_client(settings, transport))
    with pytest.raises(SourceHTTPError, match="loki: 400 from GET /loki/api/v1/query_range: parse error at line 1"):
        await source.fetch(parse_trace_id(SC["trace_id"]), WINDOW, SERVICES)


async def test_one_failed_lookup_still_returns_the_other() -> None:
    ok = json.loads((FIXTURES / "recorded/loki/query_range.line_filter_categorized.json").read_text())["response"]["body"]

    def handle(request: httpx.Request) -> httpx.Response:
        if "|=" in request.url.params["query"]:
            return httpx.Response(200, json=ok)
        return httpx.Response(400, text="parse error at line 1, col 3: syntax error")

    settings = load_settings(environ={}).loki
    result = await LokiSource(settings, make_client(settings, httpx.MockTransport(handle))).fetch(
        parse_trace_id(SC["trace_id"]), WINDOW, SERVICES)
    assert len(result.value) == 6 and result.truncated
    assert result.note and "structured-metadata lookup failed" in result.note


async def test_garbage_is_a_protocol_error() -> None:
    settings = load_settings(environ={}).loki
    for body in (b"<html>", b'{"status":"success","data":{"resultType":"matrix","result":[]}}', b'{"status":"success"}'):
        source = LokiSource(settings, make_client(settings, httpx.MockTransport(lambda r, b=body: httpx.Response(200, content=b))))
        with pytest.raises(SourceProtocolError):
            await source.fetch(parse_trace_id(SC["trace_id"]), WINDOW, SERVICES)


@pytest.mark.parametrize("path", ["upstream/loki/query_range.streams.uncategorized.json", "upstream/loki/query_range.streams.categorize_labels.json",
                                  "upstream/grafana/loki_streams_simple.json", "upstream/grafana/loki_streams_structured_metadata.json"])
def test_upstream_answers_parse_in_both_shapes(path: str) -> None:
    body = json.loads((FIXTURES / path).read_text())
    lines, entries = parse_streams(body, LokiSettings())
    assert entries == len(lines) > 0
    assert all(isinstance(line.timestamp_ns, int) and line.timestamp_ns > 0 and line.line for line in lines)
