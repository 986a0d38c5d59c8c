"""The HTTP surface: input refused before any backend call, problem+json, auth, probes, metrics.

Backends sit behind httpx.MockTransport here, under the real clients the app builds, so every
request a backend would receive is counted. Wire-exact backend behaviour is tested per source
(tests/sources) and against real servers (tests/integration).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from tests.apiclient import TRACE, Backends, recorded_loki


class TestCorrelate:
    async def test_joins_all_three_sources(self, make_client: Any) -> None:
        client = await make_client()
        response = await client.get(f"/correlate/{TRACE}")
        assert response.status == 200
        body = await response.json()
        assert body["summary"]["span_count"] == 5 and body["summary"]["root_service"] == "api-gateway"
        assert body["summary"]["log_count"] == 8 and body["summary"]["exemplar_count"] == 1
        by_span = {s["span_id"]: s for s in body["spans"]}
        assert len(by_span["b7ad6b7169203331"]["log_ids"]) == 2  # SELECT debug line + slow query warn
        assert by_span["00f067aa0ba902b7"]["exemplar_ids"] == [body["exemplars"][0]["id"]]
        assert {s: body["sources"][s]["status"] for s in body["sources"]} == {"jaeger": "ok", "loki": "ok", "prometheus": "ok"}
        assert body["links"]["jaeger"].endswith(f"/trace/{TRACE}")

    @pytest.mark.parametrize("bad", ["xyz", "0" * 32, "a" * 33, "%00", "4bf9%22%7D%20%7C%3D%20%22x", "a" * 10_000])
    async def test_invalid_ids_are_400_problem_json_before_any_backend_call(self, make_client: Any, backends: Backends, bad: str) -> None:
        client = await make_client()
        response = await client.get(f"/correlate/{bad}")
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        body = await response.json()
        assert body["status"] == 400 and body["param"] == "trace_id"
        assert backends.requests == []

    @pytest.mark.parametrize(("query", "param"), [("start=yesterday", "start"), ("start=2030-01-01T00:00:00Z&end=2020-01-01T00:00:00Z", "start"),
                                                  ("start=2000-01-01T00:00:00Z&end=2010-01-01T00:00:00Z", "end"), ("format=xml", "format")])
    async def test_bad_parameters_are_400_naming_them(self, make_client: Any, backends: Backends, query: str, param: str) -> None:
        client = await make_client()
        response = await client.get(f"/correlate/{TRACE}?{query}")
        assert response.status == 400 and (await response.json())["param"] == param
        assert backends.requests == []

    async def test_short_ids_are_padded_before_asking_jaeger(self, make_client: Any, backends: Backends) -> None:
        client = await make_client()
        await client.get("/correlate/7B4C2D9E1F3A5B6C")
        jaeger = [r for r in backends.requests if "/api/v3/traces/" in r.url.path]
        assert jaeger[0].url.path == "/api/v3/traces/00000000000000007b4c2d9e1f3a5b6c"

    async def test_a_down_backend_gives_200_with_its_status(self, make_client: Any, backends: Backends) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)
        backends.loki = refuse
        client = await make_client()
        response = await client.get(f"/correlate/{TRACE}")
        body = await response.json()
        assert response.status == 200
        assert body["sources"]["loki"]["status"] == "unavailable" and "ConnectError" in body["sources"]["loki"]["error"]
        assert body["summary"]["span_count"] == 5 and body["summary"]["exemplar_count"] == 1

    async def test_unknown_everywhere_is_404_problem(self, make_client: Any, backends: Backends) -> None:
        backends.jaeger = lambda r: httpx.Response(404, text='{"error":{"httpCode":404,"message":"No traces found"}}',
                                                   headers={"Content-Type": "text/plain; charset=utf-8"})
        backends.loki = lambda r: httpx.Response(200, json=recorded_loki("query_range.no_match.json"))
        backends.prometheus = lambda r: httpx.Response(200, json={"status": "success", "data": []})
        client = await make_client()
        response = await client.get("/correlate/ffffffffffffffffffffffffffffffff")
        assert response.status == 404 and response.content_type == "application/problem+json"
        assert (await response.json())["sources"]["jaeger"]["status"] == "not_found"

    async def test_text_format_shows_the_tree(self, make_client: Any) -> None:
        client = await make_client()
        response = await client.get(f"/correlate/{TRACE}?format=text")
        text = await response.text()
        assert response.status == 200 and "GET /api/courses" in text and "Sources:" in text


class TestFromLog:
    async def test_extracts_the_id_from_a_logfmt_line(self, make_client: Any, backends: Backends) -> None:
        client = await make_client()
        line = f'level=info msg="GET /api/courses" trace_id={TRACE} span_id=00f067aa0ba902b7'
        response = await client.post("/correlate/from-log", data=line)
        assert response.status == 200 and (await response.json())["trace_id"] == TRACE

    async def test_extracts_from_a_nested_json_body(self, make_client: Any) -> None:
        client = await make_client()
        line = json.dumps({"level": "warn", "msg": "slow query", "otel": {"trace_id": TRACE, "span_id": "b7ad6b7169203331"}})
        response = await client.post("/correlate/from-log", json={"line": line})
        assert response.status == 200 and (await response.json())["trace_id"] == TRACE

    async def test_a_line_without_an_id_is_422(self, make_client: Any, backends: Backends) -> None:
        client = await make_client()
        response = await client.post("/correlate/from-log", data="GET /healthz 200 1ms")
        assert response.status == 422 and response.content_type == "application/problem+json"
        assert backends.requests == []


class TestExemplars:
    async def test_lists_exemplars_with_correlate_links(self, make_client: Any) -> None:
        client = await make_client()
        response = await client.get("/exemplars", params={"query": "http_server_duration_seconds_bucket"})
        body = await response.json()
        assert response.status == 200 and body["count"] == 1
        assert body["exemplars"][0]["trace_id"] == TRACE
        assert f"/correlate/{TRACE}?start=" in body["exemplars"][0]["correlate"]

    async def test_query_is_required(self, make_client: Any) -> None:
        client = await make_client()
        assert (await client.get("/exemplars")).status == 400


class TestAuth:
    async def test_protected_routes_need_the_bearer_token(self, make_client: Any) -> None:
        settings = load_settings(environ={"CORRELATOR_SERVER_AUTH_TOKEN": "s3cret-token-value"})
        client = await make_client(settings)
        for path in (f"/correlate/{TRACE}", "/exemplars?query=up", "/metrics", "/openapi.json"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token-value"}):
                response = await client.get(path, headers=headers)
                assert response.status == 401, (path, headers)
                assert "s3cret" not in await response.text()
        ok = await client.get(f"/correlate/{TRACE}", headers={"Authorization": "Bearer s3cret-token-value"})
        assert ok.status == 200
        assert (await client.get("/healthz")).status == 200

    async def test_tenant_is_forwarded_only_when_configured(self, make_client: Any, backends: Backends) -> None:
        client = await make_client()
        await client.get(f"/correlate/{TRACE}", headers={"X-Scope-OrgID": "team-b"})
        assert all("X-Scope-OrgID" not in r.headers for r in backends.requests)
        backends.requests.clear()
        forwarding = await make_client(load_settings(environ={"CORRELATOR_SERVER_FORWARD_TENANT": "true"}))
        await forwarding.get(f"/correlate/{TRACE}", headers={"X-Scope-OrgID": "team-b"})
        loki = [r for r in backends.requests if r.url.path.startswith("/loki/")]
        assert loki and all(r.headers["X-Scope-OrgID"] == "team-b" for r in loki)
        others = [r for r in backends.requests if not r.url.path.startswith("/loki/")]
        assert others and all("X-Scope-OrgID" not in r.headers for r in others)  # not configured for them
        backends.requests.clear()
        everywhere = await make_client(load_settings(environ={
            "CORRELATOR_SERVER_FORWARD_TENANT": "true", "CORRELATOR_JAEGER_FORWARD_TENANT": "true",
            "CORRELATOR_PROMETHEUS_FORWARD_TENANT": "true"}))
        await everywhere.get(f"/correlate/{TRACE}", headers={"X-Scope-OrgID": "team-c"})
        assert backends.requests and all(r.headers["X-Scope-OrgID"] == "team-c" for r in backends.requests)


class TestOperations:
    async def test_readyz_names_the_backend_that_is_not_ready(self, make_client: Any, backends: Backends) -> None:
        backends.prometheus = lambda r: httpx.Response(503, text="Service Unavailable")
        backends.jaeger = lambda r: httpx.Response(200, json={"services": []})
        client = await make_client()
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503 and body["sources"]["prometheus"]["status"] != "ok"
        assert body["sources"]["loki"]["status"] == "ok" and body["sources"]["jaeger"]["status"] == "ok"

    async def test_metrics_have_no_trace_id_labels(self, make_client: Any) -> None:
        client = await make_client()
        await client.get(f"/correlate/{TRACE}")
        await client.get("/correlate/nothex")
        text = await (await client.get("/metrics")).text()
        assert 'correlator_requests_total{code="200",route="/correlate/{trace_id}"} 1.0' in text
        assert 'code="400"' in text
        assert TRACE not in text

    async def test_openapi_describes_every_route(self, make_client: Any) -> None:
        client = await make_client()
        spec = await (await client.get("/openapi.json")).json()
        app_routes = {"/correlate/{trace_id}", "/correlate/from-log", "/exemplars", "/investigate", "/healthz", "/readyz", "/metrics",
                      "/openapi.json"}
        assert set(spec["paths"]) == app_routes
