"""/mcp in the service, through the SDK's own client: the tool list, input checks, the token.

None of this may reach a backend, so the backends are the recorded Loki (which counts every
request) and closed ports for Jaeger and Prometheus; tests/integration/test_mcp.py runs the
tools against the real ones.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from correlator.api import BACKENDS, create_app
from correlator.config import load_settings
from correlator.errors import InvalidInput
from correlator.ids import parse_trace_id
from correlator.mcp import CorrelatorTools, build_server
from tests.fakes.loki import REQUESTS, make_fake_loki_app
from tests.integration.servers import free_port
from tests.mcpclient import TOKEN, http_client, text_of

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# Bad IDs, and strings that would mean something to LogQL, PromQL, a URL path, a shell or a page.
BAD_INPUTS = ["xyz", "", "0" * 32, "4bf92f3577b34da6a3ce929d0e0e47361", "' OR 1=1 --", '"} | {job=~".+"}',
              "../../api/v3/traces", '4bf92f35\n{job=~".+"}', "<script>alert(1)</script>", "$(id)"]


@pytest.fixture
async def loki(aiohttp_server: Any) -> Any:
    return await aiohttp_server(make_fake_loki_app())


@pytest.fixture
async def service(aiohttp_server: Any, loki: Any) -> Any:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": closed, "CORRELATOR_PROMETHEUS_URL": closed,
                                      "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}",
                                      "CORRELATOR_SERVER_AUTH_TOKEN": TOKEN,
                                      # No worker process: MCP then uses the service's correlator, whose backend calls we count.
                                      "CORRELATOR_SERVER_OFFLOAD_BYTES": "0"})
    return await aiohttp_server(create_app(settings))


async def test_tools_and_their_schemas_over_http(service: Any) -> None:
    async with http_client(service) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert service.app[BACKENDS].correlator.backend_calls == 0
    assert set(tools) == {"correlate_trace", "get_span", "trace_from_log", "slow_requests", "investigate"}
    schema = tools["correlate_trace"].input_schema
    assert schema["required"] == ["trace_id"]
    assert schema["properties"]["trace_id"]["type"] == "string"
    assert schema["properties"]["budget_tokens"] == {**schema["properties"]["budget_tokens"], "type": "integer", "default": 2000}
    assert tools["get_span"].input_schema["required"] == ["trace_id", "span_id"]
    assert tools["trace_from_log"].input_schema["required"] == ["line"]
    assert tools["slow_requests"].input_schema["properties"]["limit"]["default"] == 10
    assert tools["investigate"].input_schema["required"] == ["query"]
    assert all(tool.annotations is not None and tool.annotations.read_only_hint for tool in tools.values())


async def test_bad_input_is_a_tool_error_with_the_rest_text_and_no_backend_call(service: Any, loki: Any) -> None:
    backends = service.app[BACKENDS]
    async with http_client(service) as client, httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        for bad in BAD_INPUTS:
            with pytest.raises(InvalidInput) as refused:
                parse_trace_id(bad)
            result = await client.call_tool("correlate_trace", {"trace_id": bad})
            assert result.is_error and f"Invalid input: trace_id: {refused.value.message}" in text_of(result)
            if bad and "/" not in bad:  # the IDs a URL path can carry: the REST answer says the same
                problem = (await rest.get(str(service.make_url("/correlate/")) + quote(bad, safe=""))).json()
                assert (problem["status"], problem["detail"]) == (400, refused.value.message)
        for args, fix in (({"trace_id": TRACE, "span_id": "zz"}, "span_id"),
                          ({"trace_id": TRACE, "budget_tokens": 10}, "budget_tokens"),
                          ({"query": " "}, "query"), ({"query": "up", "start": "yesterday"}, "start")):
            tool = "slow_requests" if "query" in args else "get_span" if "span_id" in args else "correlate_trace"
            result = await client.call_tool(tool, args)
            assert result.is_error and f"Invalid input: {fix}: " in text_of(result), text_of(result)
    assert backends.correlator.backend_calls == 0 and loki.app[REQUESTS] == []


async def test_http_refuses_a_request_without_the_token(service: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient() as http:
        for auth in ({}, {"Authorization": "Bearer wrong"}):
            answer = await http.post(str(service.make_url("/mcp")), json=body, headers={**headers, **auth})
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="correlator"'
            assert TOKEN not in answer.text
    with pytest.raises(ExceptionGroup) as refused:  # the SDK's client reports the 401 from inside its task group
        async with http_client(service, token=None) as client:
            await client.list_tools()
    assert refused.group_contains(MCPError, match="Server returned an error response", depth=None)


async def test_a_crash_reaches_the_model_without_its_details() -> None:
    """In-process (the SDK's client straight on the server): a failure inside a tool names nothing of ours."""
    secret = "http://admin:hunter2@jaeger.internal:16686"

    class Exploding:
        async def correlate(self, *_args: Any) -> Any:
            raise RuntimeError(f"cannot reach {secret} with token {TOKEN}")

    settings = load_settings(environ={})
    server = build_server(CorrelatorTools(settings, lambda: Exploding(), lambda: Exploding()))  # type: ignore[arg-type, return-value]
    async with Client(server) as client:
        result = await client.call_tool("correlate_trace", {"trace_id": TRACE})
    text = text_of(result)
    assert result.is_error and text.endswith("the correlator failed; the error is in its own logs")
    assert "hunter2" not in text and TOKEN not in text and "Traceback" not in text


async def test_the_callers_tenant_reaches_loki_as_over_rest(aiohttp_server: Any, loki: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": closed, "CORRELATOR_PROMETHEUS_URL": closed,
                                      "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}",
                                      "CORRELATOR_SERVER_FORWARD_TENANT": "true", "CORRELATOR_DEADLINE_SECONDS": "2"})
    service = await aiohttp_server(create_app(settings))
    for tenant, expect_error in (("team-a", False), ("x" * 151, True)):
        async with httpx2.AsyncClient(headers={"X-Scope-OrgID": tenant}, timeout=60) as http, \
                Client(streamable_http_client(str(service.make_url("/mcp")), http_client=http)) as client:
            result = await client.call_tool("correlate_trace", {"trace_id": TRACE})
        assert result.is_error is expect_error, text_of(result)
    assert "Invalid input: X-Scope-OrgID: must be 1-150 printable characters" in text_of(result)
    assert {r.headers.get("X-Scope-OrgID") for r in loki.app[REQUESTS]} == {"team-a"}  # asked, and only for team-a
