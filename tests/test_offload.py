"""Big traces go to the worker process (issue 14, P8): the answer is the one the event loop gives."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from correlator.api import BACKENDS, create_app
from correlator.config import Settings, load_settings
from correlator.ids import parse_trace_id
from correlator.model import SourceReport, SourceStatus, Window
from correlator.offload import Offloader, RawTrace
from tests.apiclient import T0, TRACE, Backends

OTHER = "0123456789abcdef0123456789abcdef"


def big_trace(spans: int, trace_id: str = TRACE) -> dict[str, Any]:
    """A trace with what every detector looks at: N+1 siblings, an error with its exception, fan-out, gaps."""
    def span(i: int) -> dict[str, Any]:
        parent = None if i == 0 else f"{(i - 1) // 6 + 1:016x}"
        start = T0 + i * 40_000 + (i % 5) * 1_000_000
        body: dict[str, Any] = {
            "traceId": trace_id, "spanId": f"{i + 1:016x}", "name": f"SELECT item {i % 3}" if i % 6 else f"GET /api/{i % 4}",
            "kind": 3 if i % 6 else 2, "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 2_000_000 + (i % 11) * 300_000),
            "attributes": [{"key": "db.statement", "value": {"stringValue": f"SELECT * FROM t WHERE id = {i}"}},
                           {"key": "retries", "value": {"intValue": str(i % 3)}},
                           {"key": "cached", "value": {"boolValue": i % 2 == 0}},
                           {"key": "ratio", "value": {"doubleValue": i / 7}}],
            "status": {"code": 2, "message": "boom"} if i % 97 == 5 else {},
        }
        if i % 97 == 5:
            body["events"] = [{"name": "exception", "timeUnixNano": str(start + 1000),
                               "attributes": [{"key": "exception.message", "value": {"stringValue": "db timeout"}}]}]
        if parent:
            body["parentSpanId"] = parent
        return body

    services = ("api-gateway", "auth-service", "course-service", "billing")
    return {"result": {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
         "scopeSpans": [{"scope": {"name": "test"}, "spans": [span(i) for i in range(spans) if i % len(services) == n]}]}
        for n, service in enumerate(services)]}}


def settings(offload_bytes: int, **jaeger: Any) -> Settings:
    s = load_settings(environ={})
    # Inline and offloaded answers must match: with a hint, let the untraced lookups never be cut short
    # by the wait after the main lookups (the worker's spawn makes Jaeger's side the slow one).
    join = replace(s.join, untraced_wait_ratio=10.0)
    # The request's deadline with room for the worker's spawn on a slow or busy machine (~10 s seen at load 20):
    # these tests compare answers, and a standing cut short by the deadline says "unknown" in one of them.
    return replace(s, server=replace(s.server, offload_bytes=offload_bytes), jaeger=replace(s.jaeger, **jaeger), join=join,
                   deadline_seconds=60.0)


def comparable(body: bytes) -> Any:
    """The answer without what differs between any two runs: how long each backend took, and
    without a trace the orphan search window (the last hour, from now)."""
    parsed = orjson.loads(body)
    for report in (parsed.get("sources") or {}).values():
        report["ms"] = 0
    if parsed.get("summary", {}).get("span_count") == 0:
        parsed.pop("window")
        parsed["links"].pop("grafana")
    return parsed


def comparable_page(html: bytes) -> bytes:
    """The page without the backends' timings, and its embedded data's cache flag (the worker renders
    the page with the first answer; a cache hit's page says so only in the JSON)."""
    html = re.sub(rb"(&#34;|&quot;|\\?\")ms(&#34;|&quot;|\\?\"):\s*[\d.]+", b"ms:?", html)
    html = re.sub(rb"[\d.]+ ?ms\b", b"?ms", html)
    return re.sub(rb"(&#34;|&quot;|\\?\")cached(&#34;|&quot;|\\?\"):\s*(true|false)", b"cached:?", html)


def comparable_text(text: str) -> str:
    return re.sub(r", [\d.]+ms", ", ?ms", text)


async def both(aiohttp_client: Any, answer: Any, path: str, **jaeger: Any) -> tuple[Any, Any, Any]:
    """The same requests to an inline app and an offloading one: (inline, offloaded) responses, and the latter app."""
    results = []
    apps = []
    for offload_bytes in (0, 1024):
        backends = Backends()
        backends.jaeger = answer
        client = await aiohttp_client(create_app(settings(offload_bytes, **jaeger), backends.transports()))
        responses = []
        for suffix in ("", "", "format=text", "format=html"):  # the second one is a cache hit
            sep = "&" if "?" in path else "?"
            response = await client.get(path + (sep + suffix if suffix else ""))
            responses.append((response.status, response.content_type, await response.read()))
        results.append(responses)
        apps.append(client.app)
    return results[0], results[1], apps[1]


@pytest.mark.parametrize("hint", [False, True], ids=["no-hint", "hint"])
async def test_a_big_trace_gets_the_same_answer_from_the_worker(aiohttp_client: Any, hint: bool) -> None:
    body = orjson.dumps(big_trace(1500))
    path = f"/correlate/{TRACE}" + (f"?start={T0 // 1000}&end={(T0 + 90_000_000) // 1000}" if hint else "")

    inline, offloaded, app = await both(aiohttp_client, lambda r: httpx.Response(200, content=body), path)

    assert app[BACKENDS].correlator.offload._pool is not None  # it really went to the worker
    for (status_a, type_a, a), (status_b, type_b, b) in zip(inline[:2], offloaded[:2], strict=True):
        assert (status_a, type_a) == (status_b, type_b) == (200, "application/json")
        assert comparable(a) == comparable(b)
    first, hit = comparable(offloaded[0][2]), comparable(offloaded[1][2])
    assert not first["cached"] and hit["cached"]
    assert first["summary"]["span_count"] == 1500 and first["findings"] and first["critical_path"]
    assert {f["kind"] for f in first["findings"]} >= {"error", "fan_out", "gap"}
    assert first["sources"]["jaeger"]["items"] == 1500
    assert inline[2][0] == offloaded[2][0] == 200
    assert comparable_text(inline[2][2].decode()) == comparable_text(offloaded[2][2].decode())
    assert inline[3][:2] == offloaded[3][:2] == (200, "text/html")
    assert comparable_page(inline[3][2]) == comparable_page(offloaded[3][2])
    assert b"SELECT item 1" in offloaded[3][2] and len(offloaded[3][2]) > 100_000  # the spans are in it


async def test_a_big_trace_over_max_spans_is_cut_and_says_so_in_both(aiohttp_client: Any) -> None:
    body = orjson.dumps(big_trace(1200))

    inline, offloaded, _ = await both(aiohttp_client, lambda r: httpx.Response(200, content=body), f"/correlate/{TRACE}",
                                      max_spans=1000)

    a, b = comparable(inline[0][2]), comparable(offloaded[0][2])
    assert a == b
    assert b["sources"]["jaeger"]["truncated"] and b["sources"]["jaeger"]["items"] == 1000
    assert b["sources"]["jaeger"]["cut"].startswith("kept 1,000 of 1,200 spans (jaeger.max_spans)")
    assert "cut: kept 1,000 of 1,200 spans" in inline[2][2].decode() and "cut: kept 1,000" in offloaded[2][2].decode()
    assert not b["cached"] and not comparable(offloaded[1][2])["cached"]  # a cut answer is not cached


async def test_a_big_answer_that_is_garbage_is_a_bad_response_in_the_same_words(aiohttp_client: Any) -> None:
    garbage = b'{"result": {"resourceSpans": [' + b'{"scopeSpans": [{"spans": [[1, 2], "x"]}]},' * 100 + b"{}]}}"
    not_json = b'{"result": ' + b"x" * 5000

    for body in (garbage, not_json):
        inline, offloaded, _ = await both(aiohttp_client, lambda r, body=body: httpx.Response(200, content=body),
                                          f"/correlate/{TRACE}")
        a, b = comparable(inline[0][2]), comparable(offloaded[0][2])
        assert a == b and inline[0][0] == offloaded[0][0] == 200
        assert b["sources"]["jaeger"]["status"] == "bad_response" and b["sources"]["jaeger"]["error"]
        assert b["summary"]["log_count"] == 8  # Loki's lines still there


async def test_a_big_answer_with_only_other_traces_is_not_found(aiohttp_client: Any) -> None:
    body = orjson.dumps(big_trace(300, trace_id=OTHER))

    inline, offloaded, _ = await both(aiohttp_client, lambda r: httpx.Response(200, content=body), f"/correlate/{TRACE}")

    a, b = comparable(inline[0][2]), comparable(offloaded[0][2])
    assert a == b and b["sources"]["jaeger"]["status"] == "not_found" and b["summary"]["span_count"] == 0
    assert inline[3][:2] == offloaded[3][:2] == (200, "text/html")  # Loki's lines: a page, sent from the worker's file


async def test_the_answer_file_goes_with_its_last_reference() -> None:
    offload = Offloader(1)
    ok = SourceReport(SourceStatus.OK, 1.0)
    raw = RawTrace(orjson.dumps(big_trace(50)), TRACE, 1000, "GET /api/v3/traces/x")
    try:
        _light, answer, _then = await offload.assemble(settings(1), parse_trace_id(TRACE), Window(T0, T0 + 1), raw, None,
                                                {"jaeger": ok, "loki": ok, "prometheus": ok}, (), (), None)
    finally:
        offload.close()
    path = answer.path
    with open(answer.path, "rb") as file:
        data = file.read()
    hit, first = ([p if isinstance(p, bytes) else data[p[0]:p[1]] for p in answer.json_pieces(cached)] for cached in (True, False))
    assert b"".join(hit) == answer.json_body(True) and orjson.loads(b"".join(hit))["cached"] is True
    assert b"".join(first) == data and orjson.loads(b"".join(first))["cached"] is False
    assert os.path.exists(path)

    del answer
    # The pool's manager thread may still hold the last result it handed over (the object that carried this
    # answer) for a moment after close(): wait for that reference to go too, bounded.
    for _ in range(200):
        gc.collect()
        if not os.path.exists(path):
            break
        await asyncio.sleep(0.05)

    assert not os.path.exists(path)


async def test_a_big_trace_says_where_it_stands_as_an_inline_answer_does(aiohttp_client: Any) -> None:
    """The standing is looked up while the worker parses and rendered into its answer: the JSON, the text and the
    page of a big trace say how its request compares with its series, in the same words as an inline answer."""
    body = orjson.dumps(big_trace(1200))
    exemplar_answer = {"status": "success", "data": [{
        "seriesLabels": {"__name__": "http_server_duration_seconds_bucket", "service": "api-gateway", "le": "0.25"},
        "exemplars": [{"labels": {"trace_id": TRACE, "span_id": f"{1:016x}"}, "value": "0.2",
                       "timestamp": (T0 + 50_000_000) / 1e9}]}]}
    buckets = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"le": le}, "value": [T0 / 1e9, count]} for le, count in (("0.1", "80"), ("0.25", "95"), ("+Inf", "100"))]}}

    def prometheus(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=buckets if request.url.path == "/api/v1/query" else exemplar_answer)

    answers = []
    for offload_bytes in (0, 1024):
        backends = Backends()
        backends.jaeger = lambda r: httpx.Response(200, content=body)
        backends.prometheus = prometheus
        client = await aiohttp_client(create_app(settings(offload_bytes), backends.transports()))
        json_answer = await client.get(f"/correlate/{TRACE}")
        text = await (await client.get(f"/correlate/{TRACE}?format=text")).text()
        answers.append((comparable(await json_answer.read()), text))
    (inline, inline_text), (offloaded, offloaded_text) = answers
    assert offloaded["standing"]["known"] and offloaded["standing"]["message"].startswith("slower than ~")
    assert offloaded["standing"] == inline["standing"]
    assert [e["standing"] for e in offloaded["exemplars"]] == [e["standing"] for e in inline["exemplars"]]
    stands = [line for line in offloaded_text.splitlines() if "stands" in line]
    assert stands and stands == [line for line in inline_text.splitlines() if "stands" in line]


async def test_two_big_traces_at_once_each_keep_their_own_parse(aiohttp_client: Any) -> None:
    """Outlined concurrently, each big trace is kept in the worker under a token of its own (they once shared one,
    and the second parse replaced the first: "the worker lost the parsed trace")."""
    bodies = {TRACE: orjson.dumps(big_trace(1200)), OTHER: orjson.dumps(big_trace(1300, trace_id=OTHER))}
    backends = Backends()
    backends.jaeger = lambda r: httpx.Response(200, content=bodies.get(r.url.path.rsplit("/", 1)[-1], b'{"result": {}}'))
    client = await aiohttp_client(create_app(settings(1024), backends.transports()))
    answers = await asyncio.gather(*(client.get(f"/correlate/{tid}") for tid in (TRACE, OTHER)))
    reports = [(await a.json())["sources"]["jaeger"] for a in answers]
    assert [(r["status"], r["items"]) for r in reports] == [("ok", 1200), ("ok", 1300)], reports


async def test_with_everything_on_the_loop_big_models_are_cached_as_few_as_the_workers_answers(aiohttp_client: Any,
                                                                                              monkeypatch: Any) -> None:
    """offload_bytes 0: a cached 100k-span model held ~96 MB, up to cache.max_entries of them (bench P5: 2 GB);
    big ones now share cache.max_big_entries (1) as the worker's answers do, small ones are cached as before."""
    import correlator.correlate

    monkeypatch.setattr(correlator.correlate, "BIG_MODEL_SPANS", 200)  # the real bound (10k spans) costs seconds here
    bodies = {TRACE: orjson.dumps(big_trace(300)), OTHER: orjson.dumps(big_trace(300, trace_id=OTHER))}
    backends = Backends()
    backends.jaeger = lambda r: httpx.Response(200, content=bodies[r.url.path.rsplit("/", 1)[-1]])
    client = await aiohttp_client(create_app(settings(0), backends.transports()))
    correlator_ = client.app[BACKENDS].correlator

    for tid in (TRACE, OTHER):
        assert not (await (await client.get(f"/correlate/{tid}")).json())["cached"]
    assert (len(correlator_._cache), len(correlator_._big_cache)) == (0, 1)
    assert (await (await client.get(f"/correlate/{OTHER}")).json())["cached"]  # the last one is kept

    monkeypatch.setattr(correlator.correlate, "BIG_MODEL_SPANS", 301)  # the same trace, small: the ordinary cache
    assert not (await (await client.get(f"/correlate/{TRACE}")).json())["cached"]
    assert (len(correlator_._cache), len(correlator_._big_cache)) == (1, 1)


async def test_a_big_answer_nobody_knows_is_the_same_404_and_the_same_page_for_a_browser(aiohttp_client: Any) -> None:
    body = orjson.dumps(big_trace(300, trace_id=OTHER))
    answers = []
    for offload_bytes in (0, 1024):
        backends = Backends()
        backends.jaeger = lambda r: httpx.Response(200, content=body)
        backends.loki = lambda r: httpx.Response(200, json={"status": "success", "data": {"resultType": "streams", "result": []}})
        backends.prometheus = lambda r: httpx.Response(200, json={"status": "success", "data": []})
        client = await aiohttp_client(create_app(settings(offload_bytes), backends.transports()))
        api = await client.get(f"/correlate/{TRACE}")
        page = await client.get(f"/correlate/{TRACE}", headers={"Accept": "text/html"})
        answers.append((api.status, api.content_type, comparable(await api.read()), page.status, page.content_type,
                        await page.text()))
    (*inline, inline_page), (*offloaded, offloaded_page) = answers
    assert inline == offloaded and inline[:2] == [404, "application/problem+json"] and inline[3:] == [404, "text/html"]
    assert "Trace not found" in inline_page and "Trace not found" in offloaded_page


async def test_an_answer_nobody_waits_for_any_more_is_removed_when_the_worker_finishes_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The deadline (or the service closing) gives up on an assembly the worker is running: the answer files it
    writes when it ends have no owner, and go (34 MB of tmpfs each at 100k spans)."""
    from correlator import offload as offload_module

    removed: list[str | None] = []
    remove = offload_module._remove_later
    def noted(*paths: str | None) -> None:
        removed.extend(paths)
        remove(*paths)

    monkeypatch.setattr(offload_module, "_remove_later", noted)
    offload = Offloader(1)
    ok = SourceReport(SourceStatus.OK, 1.0)
    raw = RawTrace(orjson.dumps(big_trace(50)), TRACE, 10_000, "GET /api/v3/traces/x")
    try:
        await offload.warm()
        # `then` runs in the worker after the answer's files are written: it holds the worker there for 2 s.
        assemble = asyncio.ensure_future(offload.assemble(settings(1), parse_trace_id(TRACE), Window(T0, T0 + 1), raw, None,
                                                          {"jaeger": ok, "loki": ok, "prometheus": ok}, (), (), None,
                                                          then=(_linger, (2.0, str(tmp_path / "lingering")))))
        for _ in range(1200):  # cancelled only once the worker holds the answer (niced, it is slow on a busy machine)
            if (tmp_path / "lingering").exists():
                break
            await asyncio.sleep(0.05)
        assert not assemble.done()
        assemble.cancel()
        for _ in range(1200):  # the worker (niced: slow on a busy machine) finishes, its answer's two files go to the unlinker
            if sum(1 for p in removed if p and "correlator-answer-" in p) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        offload.close()
    answers = [p for p in removed if p and "correlator-answer-" in p]
    assert len(answers) == 3  # the body handed to the worker (at once), then the JSON and the page
    await asyncio.get_running_loop().run_in_executor(offload_module._unlinker, lambda: None)
    assert not any(os.path.exists(p) for p in answers)


def _linger(correlation: Any, tree: Any, seconds: float, marker: str) -> None:
    Path(marker).touch()
    time.sleep(seconds)
