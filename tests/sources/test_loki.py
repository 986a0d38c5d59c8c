"""The Loki source against the fake Loki (proven equal to the real recordings), over real sockets,
and against the recorded and upstream answers replayed through httpx.MockTransport."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from correlator.config import LokiSettings, load_settings
from correlator.errors import SourceHTTPError, SourceProtocolError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.loki import LokiSource, parse_streams, parse_streams_body
from correlator.timeparams import rfc3339_ns
from tests.conftest import FIXTURES, closed_after_test
from tests.fakes.loki import REQUESTS, Entry, make_fake_loki_app, recorded_entries, scenario

SC = scenario()
T0 = SC["t0_unix_nano"]
TRACE = parse_trace_id(SC["trace_id"])
WINDOW = Window(T0, T0 + 145_000_000)  # the trace's own span: first to last recorded line
SERVICES = ["api-gateway", "auth-service", "course-service"]
SPANS = SC["span_ids"]
RECORDED = FIXTURES / "recorded" / "loki"


def _client(settings: LokiSettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return closed_after_test(make_client(settings, transport))


async def source_for(aiohttp_server: Any, settings: LokiSettings | None = None, **app_args: Any) -> tuple[LokiSource, Any]:
    server = await aiohttp_server(make_fake_loki_app(**app_args))
    settings = replace(settings or load_settings(environ={}).loki, url=f"http://127.0.0.1:{server.port}")
    return LokiSource(settings, _client(settings)), server


def mocked(handle: Callable[[httpx.Request], httpx.Response], **env: str) -> LokiSource:
    settings = load_settings(environ={"CORRELATOR_LOKI_RETRY_ATTEMPTS": "1", **env}).loki
    return LokiSource(settings, _client(settings, httpx.MockTransport(handle)))


def recorded_body(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())["response"]["body"]


def replay(by_line: str, by_metadata: str) -> Callable[[httpx.Request], httpx.Response]:
    """Answers each lookup with a recorded body, chosen by the query's shape."""
    def handle(request: httpx.Request) -> httpx.Response:
        name = by_line if "|=" in request.url.params["query"] else by_metadata
        return httpx.Response(200, json=recorded_body(name))
    return handle


# ------------------------------------------------------------------ against the fake, real sockets


async def test_finds_every_line_of_the_trace_in_both_homes(aiohttp_server: Any) -> None:
    """6 lines carry the ID in the body, 2 OTLP lines only in structured metadata: all 8 come back once, in order."""
    source, server = await source_for(aiohttp_server)
    result = await source.fetch(TRACE, WINDOW, SERVICES)
    assert not result.truncated and result.note is None
    got = [(line.timestamp_ns - T0, line.service, line.span_id, line.level) for line in result.value]
    assert got == [
        (0, "api-gateway", SPANS["gateway"], "info"),
        (6_000_000, "auth-service", SPANS["auth"], "info"),
        (18_000_000, "auth-service", SPANS["auth"], "warn"),
        (21_000_000, "course-service", SPANS["courses"], "info"),
        (25_000_000, "course-service", SPANS["db"], "debug"),
        (104_000_000, "course-service", SPANS["db"], "warn"),
        (106_000_000, "course-service", SPANS["cache"], "info"),
        (145_000_000, "api-gateway", SPANS["gateway"], "info"),
    ]
    assert len({line.id for line in result.value}) == 8
    assert all(SC["other_trace_id"] not in line.line for line in result.value)
    queries = [r.query["query"] for r in server.app[REQUESTS]]
    assert sorted(queries) == sorted([
        '{service_name=~"api-gateway|auth-service|course-service"} |= "4bf92f3577b34da6a3ce929d0e0e4736"',
        '{service_name=~"api-gateway|auth-service|course-service"} | trace_id="4bf92f3577b34da6a3ce929d0e0e4736"',
    ])
    assert all(r.headers["X-Loki-Response-Encoding-Flags"] == "categorize-labels" for r in server.app[REQUESTS])


async def test_labels_and_metadata_are_told_apart(aiohttp_server: Any) -> None:
    """Index labels stay labels; OTLP severity, scope and IDs are metadata."""
    source, _ = await source_for(aiohttp_server)
    otlp = [line for line in (await source.fetch(TRACE, WINDOW, SERVICES)).value if line.line == "permission cache miss"]
    assert len(otlp) == 1
    assert otlp[0].labels == {"service_name": "auth-service"}
    assert otlp[0].metadata["severity_text"] == "WARN" and otlp[0].metadata["trace_id"] == SC["trace_id"]


async def test_request_parameters(aiohttp_server: Any) -> None:
    """19-digit ns start/end widened by the margin (end + 1 ns: Loki's end is exclusive), limit, backward."""
    source, server = await source_for(aiohttp_server)
    await source.fetch(TRACE, WINDOW, SERVICES)
    for request in server.app[REQUESTS]:
        q = request.query
        assert q["start"] == str(T0 - 60_000_000_000) and len(q["start"]) == 19
        assert q["end"] == str(T0 + 145_000_000 + 60_000_000_000 + 1)
        assert (q["limit"], q["direction"]) == ("1000", "backward")
        assert "X-Scope-OrgID" not in request.headers


async def test_a_line_stamped_at_the_window_end_is_kept(aiohttp_server: Any) -> None:
    """With no margin, the last line (exactly at the trace's end) still comes back."""
    settings = replace(load_settings(environ={}).loki, margin_seconds=0)
    source, _ = await source_for(aiohttp_server, settings)
    lines = (await source.fetch(TRACE, WINDOW, SERVICES)).value
    assert len(lines) == 8 and lines[-1].timestamp_ns == WINDOW.end_ns


async def test_window_outside_the_lines_finds_nothing(aiohttp_server: Any) -> None:
    """The window is honoured: an hour later there is nothing."""
    source, _ = await source_for(aiohttp_server)
    later = Window(T0 + 3600 * 10**9, T0 + 3601 * 10**9)
    assert (await source.fetch(TRACE, later, SERVICES)).value == ()


async def test_legacy_64bit_id_found_by_its_short_form(aiohttp_server: Any) -> None:
    """A 64-bit ID is searched by its 16-character form and in metadata under both spellings."""
    source, server = await source_for(aiohttp_server)
    result = await source.fetch(parse_trace_id(SC["short_trace_id"]), WINDOW, ["legacy-billing"])
    assert [line.line for line in result.value] == ["2026-11-25 10:00:00 INFO [billing] invoice lookup trace=7b4c2d9e1f3a5b6c"]
    assert result.value[0].level == "info" and result.value[0].service == "legacy-billing"
    assert sorted(r.query["query"] for r in server.app[REQUESTS]) == [
        '{service_name="legacy-billing"} | trace_id="00000000000000007b4c2d9e1f3a5b6c" or trace_id="7b4c2d9e1f3a5b6c"',
        '{service_name="legacy-billing"} |= "7b4c2d9e1f3a5b6c"',
    ]


async def test_longer_hex_runs_are_not_the_id(aiohttp_server: Any) -> None:
    """`|= needle` also hits a longer hex run containing it; those lines are dropped client-side."""
    billing = {"service_name": "legacy-billing"}
    entries = [Entry(T0, "charge trace=7b4c2d9e1f3a5b6c", billing),
               Entry(T0 + 1, "checksum=aa7b4c2d9e1f3a5b6cff", billing),
               Entry(T0 + 2, "padded trace=00000000000000007b4c2d9e1f3a5b6c", billing)]
    source, _ = await source_for(aiohttp_server, tenants={"t": entries})
    lines = (await source.fetch(parse_trace_id("7b4c2d9e1f3a5b6c"), WINDOW, ["legacy-billing"], tenant="t")).value
    assert [line.line for line in lines] == ["charge trace=7b4c2d9e1f3a5b6c", "padded trace=00000000000000007b4c2d9e1f3a5b6c"]


async def test_a_line_found_by_both_lookups_comes_back_once(aiohttp_server: Any) -> None:
    """ID in the body and in metadata: one LogLine, with the metadata."""
    line = f'{{"msg": "both", "trace_id": "{SC["trace_id"]}"}}'
    entries = [Entry(T0, line, {"service_name": "api-gateway"}, {"trace_id": SC["trace_id"], "span_id": SPANS["gateway"]})]
    source, server = await source_for(aiohttp_server, tenants={"t": entries})
    lines = (await source.fetch(TRACE, WINDOW, ["api-gateway"], tenant="t")).value
    assert len(server.app[REQUESTS]) == 2
    assert len(lines) == 1 and lines[0].span_id == SPANS["gateway"] and lines[0].metadata["trace_id"] == SC["trace_id"]


async def test_no_match_is_an_empty_success(aiohttp_server: Any) -> None:
    """An ID no line carries: empty, not truncated, no error."""
    source, _ = await source_for(aiohttp_server)
    result = await source.fetch(parse_trace_id("ffffffffffffffffffffffffffffffff"), WINDOW, SERVICES)
    assert result.value == () and not result.truncated and result.note is None


async def test_limit_reports_truncation(aiohttp_server: Any) -> None:
    """A lookup that fills `limit` is cut: the answer says truncated and holds the newest lines."""
    settings = load_settings(environ={"CORRELATOR_LOKI_MAX_LINES": "2"}).loki
    source, _ = await source_for(aiohttp_server, settings)
    result = await source.fetch(TRACE, WINDOW, SERVICES)
    assert result.truncated and len(result.value) == 4  # 2 per lookup, the newest of each
    assert [line.timestamp_ns - T0 for line in result.value] == [6_000_000, 18_000_000, 106_000_000, 145_000_000]
    # Which part went: lines older than the later of the two lookups' oldest kept line may be missing.
    assert result.cut == ("a lookup returned its limit of 2 lines (loki.max_lines) and Loki keeps the newest: "
                          f"lines before {rfc3339_ns(T0 + 106_000_000)} may be missing")


async def test_static_selector_when_services_are_unknown(aiohttp_server: Any) -> None:
    """With only a time hint the services are unknown: the configured static selector is used."""
    source, server = await source_for(aiohttp_server)
    result = await source.fetch(TRACE, WINDOW, None)
    assert len(result.value) == 8
    assert all(r.query["query"].startswith('{service_name=~".+"}') for r in server.app[REQUESTS])


def test_selector_skips_service_names_no_literal_can_hold() -> None:
    """Empty names and lone surrogates cannot narrow the search; with none left the static selector is used."""
    source = LokiSource(LokiSettings(), httpx.AsyncClient())
    assert source.selector(["course-service", "", "x\ud800"]) == '{service_name="course-service"}'
    assert source.selector(["", "x\ud800"]) == LokiSettings().static_selector
    assert LokiSource(replace(LokiSettings(), selector_strategy="static"), httpx.AsyncClient()).selector(
        ["api-gateway"]) == LokiSettings().static_selector


async def test_tenant_header_is_sent(aiohttp_server: Any) -> None:
    """The caller's tenant goes out as X-Scope-OrgID; without one a multi-tenant Loki's 401 says what to set."""
    source, _ = await source_for(aiohttp_server, tenants={"team-a": recorded_entries(), "team-b": []})
    assert len((await source.fetch(TRACE, WINDOW, SERVICES, tenant="team-a")).value) == 8
    assert (await source.fetch(TRACE, WINDOW, SERVICES, tenant="team-b")).value == ()
    with pytest.raises(SourceHTTPError, match=r"401.*no org id.*X-Scope-OrgID"):
        await source.fetch(TRACE, WINDOW, SERVICES)


async def test_the_callers_tenant_wins_over_the_configured_one(aiohttp_server: Any) -> None:
    """settings.tenant is the default; a tenant passed by the caller replaces it."""
    settings = replace(load_settings(environ={}).loki, tenant="team-b")
    source, server = await source_for(aiohttp_server, settings, tenants={"team-a": recorded_entries(), "team-b": []})
    assert (await source.fetch(TRACE, WINDOW, SERVICES)).value == ()
    assert len((await source.fetch(TRACE, WINDOW, SERVICES, tenant="team-a")).value) == 8
    assert [r.headers["X-Scope-OrgID"] for r in server.app[REQUESTS]] == ["team-b"] * 2 + ["team-a"] * 2


async def test_ready(aiohttp_server: Any) -> None:
    """/ready answering `ready` is ready."""
    source, _ = await source_for(aiohttp_server)
    await source.ready()


async def test_not_ready_names_loki_and_its_reason() -> None:
    """A 503 from /ready is an error carrying Loki's reason."""
    source = mocked(lambda r: httpx.Response(503, text="Ingester not ready: waiting for 15s after being ready"),
                    CORRELATOR_LOKI_BREAKER_FAILURES="0")
    with pytest.raises(SourceHTTPError, match="503 from GET /ready: Ingester not ready"):
        await source.ready()


# ------------------------------------------------------------------ recorded answers, replayed


async def test_loki_errors_are_named() -> None:
    """A 400 names the source, the endpoint and Loki's own plain-text message."""
    recording = json.loads((RECORDED / "query_range.error_parse.json").read_text())["response"]
    source = mocked(lambda r: httpx.Response(recording["status"], text=recording["body"],
                                             headers={"Content-Type": recording["content_type"]}))
    with pytest.raises(SourceHTTPError, match="loki: 400 from GET /loki/api/v1/query_range: parse error at line 1, col 62: "
                                              "literal not terminated") as caught:
        await source.fetch(TRACE, WINDOW, SERVICES)
    assert caught.value.status_code == 400


async def test_one_failed_lookup_still_returns_the_other() -> None:
    """One lookup failing: the other's lines, marked partial, and a note naming the failed lookup."""
    ok = recorded_body("query_range.line_filter_categorized.json")

    def handle(request: httpx.Request) -> httpx.Response:
        if "|=" in request.url.params["query"]:
            return httpx.Response(200, json=ok)
        return httpx.Response(400, text="parse error at line 1, col 3: syntax error")

    result = await mocked(handle).fetch(TRACE, WINDOW, SERVICES)
    assert len(result.value) == 6 and result.truncated
    assert result.note and "structured-metadata lookup failed" in result.note and "parse error" in result.note


async def test_both_lookups_failing_is_an_error() -> None:
    """Nothing to return: the first failure is raised."""
    source = mocked(lambda r: httpx.Response(500, text="internal error"), CORRELATOR_LOKI_BREAKER_FAILURES="0")
    with pytest.raises(SourceHTTPError, match=r"500 .*internal error"):
        await source.fetch(TRACE, WINDOW, SERVICES)


async def test_both_answer_shapes_give_the_same_lines() -> None:
    """Categorized and folded (older Loki) answers to the two lookups give identical LogLines but labels."""
    categorized = await mocked(replay("query_range.line_filter_categorized.json",
                                      "query_range.structured_metadata_categorized.json")).fetch(TRACE, WINDOW, SERVICES)
    folded = await mocked(replay("query_range.line_filter.json",
                                 "query_range.structured_metadata.json")).fetch(TRACE, WINDOW, SERVICES)
    def key(result: Any) -> list[tuple[Any, ...]]:
        return [(line.id, line.timestamp_ns, line.line, line.service, line.span_id, line.level) for line in result.value]
    assert len(categorized.value) == 8 and key(categorized) == key(folded)


async def test_garbage_is_a_protocol_error() -> None:
    """A 200 that is not a streams answer is a bad response, not a crash."""
    for body in (b"<html>", b'{"status":"success","data":{"resultType":"matrix","result":[]}}', b'{"status":"success"}',
                 b'{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["x","y"]]}]}}'):
        source = mocked(lambda r, b=body: httpx.Response(200, content=b))
        with pytest.raises(SourceProtocolError):
            await source.fetch(TRACE, WINDOW, SERVICES)


def test_parse_drops_parser_errors_from_metadata() -> None:
    """`| json` on a text line adds __error__ labels: they are not the line's metadata."""
    lines, entries = parse_streams(recorded_body("query_range.json_parser_filter.json"), LokiSettings())
    assert entries == 4
    otlp = [line for line in lines if line.service == "auth-service"]
    assert otlp and all(not any(k.startswith("__error") for k in line.metadata) for line in otlp)
    assert {line.span_id for line in lines} == {SPANS["auth"], SPANS["courses"], SPANS["cache"]}


@pytest.mark.parametrize("path", ["upstream/loki/query_range.streams.uncategorized.json",
                                  "upstream/loki/query_range.streams.categorize_labels.json",
                                  "own/loki_streams_awkward_labels.json",
                                  "own/loki_streams_awkward_labels_categorized.json"])
def test_upstream_answers_parse_in_both_shapes(path: str) -> None:
    """Loki's own example answers and ours (quotes, commas, emoji in labels; a duplicate; tabs) parse, whichever shape."""
    body = json.loads((FIXTURES / path).read_text())
    lines, entries = parse_streams(body, LokiSettings())
    assert entries == len(lines) > 0
    assert all(isinstance(line.timestamp_ns, int) and line.timestamp_ns > 0 and line.line for line in lines)


def test_upstream_categorized_metadata_and_parsed_labels() -> None:
    """`structuredMetadata` and `parsed` both land in metadata; the stream stays the index labels."""
    body = json.loads((FIXTURES / "upstream/loki/query_range.streams.categorize_labels.json").read_text())
    lines, _ = parse_streams(body, LokiSettings())
    last = next(line for line in lines if line.line.endswith("msg=text"))
    assert last.labels == {"test": "test"} and last.metadata == {"foo": "a", "bar": "b", "msg": "text"}


@pytest.mark.parametrize("path", sorted(p.name for p in RECORDED.glob("query_range.*.json")))
def test_the_bytes_parse_equals_the_parsed_one(path: str) -> None:
    """The service parses from the bytes one entry at a time: the same lines, or the same error."""
    body = recorded_body(path)
    raw = json.dumps(body).encode()
    try:
        expected: Any = parse_streams(body, LokiSettings())
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        expected = (type(exc), str(exc))
    try:
        got: Any = parse_streams_body(bytearray(raw), LokiSettings())
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        got = (type(exc), str(exc))
    assert got == expected


@pytest.mark.parametrize("body", [
    b'{"status":"success","data":{"resultType":"streams","result":[{"stream":{"a":1},"values":[["1","x"]]}],"stats":{}}}',
    b'{"status":"success","data":{"result":[{"stream":null,"values":null},{"values":[["2","y",{"parsed":{"level":"warn"}}]]}]}}',
    b'{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["x","y"]]}]}}',
    b'{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":"abc"}]}}',
    b'{"status":"success","data":{"resultType":"streams","encodingFlags":"categorize-labels","result":[]}}',
    b'{"status":"success","data":{"resultType":"matrix","result":[]}}', b'{"status":"error"}', b'[]', b'{"status":"success"}',
])
def test_odd_shapes_parse_from_bytes_as_they_parse_from_dicts(body: bytes) -> None:
    def outcome(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            return type(exc), str(exc)

    assert outcome(lambda: parse_streams_body(body, LokiSettings())) == outcome(lambda: parse_streams(json.loads(body), LokiSettings()))


def test_a_body_that_is_not_json_says_so() -> None:
    from correlator.sources._lazyjson import NotJson

    for body in (b"<html>", b'{"status":"success","data":{"result":[{"values":[["1", "\xff"]]}]}}'):
        with pytest.raises(NotJson):
            parse_streams_body(body, LokiSettings())


_ENTRY_METADATA = st.one_of(
    st.none(), st.integers(), st.text(max_size=3),
    st.fixed_dictionaries({}, optional={
        "structuredMetadata": st.one_of(st.none(), st.dictionaries(st.sampled_from(["span_id", "level", "__error__", "k"]),
                                                                   st.one_of(st.sampled_from(["00f067aa0ba902b7", "Warn", "v"]),
                                                                             st.integers(0, 3)), max_size=3)),
        "parsed": st.one_of(st.none(), st.dictionaries(st.sampled_from(["severity", "__error_details__", "k"]),
                                                       st.sampled_from(["error", "x"]), max_size=2)),
        "other": st.integers()}),
)
_ENTRY = st.tuples(st.one_of(st.integers(0, 2**62).map(str), st.integers(0, 2**62)),
                   st.sampled_from(["level=info span_id=00f067aa0ba902b7", "ERROR x", '{"spanId":"ab","level":"warn"}', "é\\\"", ""]),
                   _ENTRY_METADATA, st.booleans(), st.booleans())


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(["service_name", "level", "detected_level", "__error__"]),
                                          st.sampled_from(["svc", "ERROR", "x"]), max_size=3),
                          st.lists(_ENTRY, max_size=6)), max_size=3), st.booleans())
def test_entries_of_any_shape_parse_from_bytes_as_from_dicts(streams: list[Any], categorized: bool) -> None:
    """The bytes parse reads most entries through a typed decoder and the rest generically: the same lines either way."""
    result = [{"stream": labels, "values": [[ts, line, *([meta] if with_meta else []), *(["extra"] if extra else [])]
                                            for ts, line, meta, with_meta, extra in entries]} for labels, entries in streams]
    data: dict[str, Any] = {"resultType": "streams", "result": result}
    if categorized:
        data["encodingFlags"] = ["categorize-labels"]
    body = json.dumps({"status": "success", "data": data}).encode()
    assert parse_streams_body(body, LokiSettings()) == parse_streams(json.loads(body), LokiSettings())


def test_line_ids_are_the_documented_hash() -> None:
    """Clients and pages keep line IDs: blake2b-64 of "{ns}|{service}|{line}", as always."""
    body = b'{"status":"success","data":{"result":[{"stream":{"service_name":"svc"},"values":[["17","a b"]]},{"values":[["5","c"]]}]}}'
    ids = [line.id for line in parse_streams_body(body, LokiSettings())[0]]
    assert ids == ["log-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest() for text in ("17|svc|a b", "5|None|c")]
