"""Untraced lookups shared between correlations (untraced_share.py): each correlation's answer is exactly
what a lookup of its own window would have given; the requests saved show at the backends."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from correlator.model import LogLine, Window
from correlator.sources import SourceResult
from correlator.untraced_share import LinesAnswer, SearchAnswer, SharedLookups, aligned, clusters, lines_within, spans_within
from tests.fakes.loki import Entry, make_fake_loki_app, recorded_entries

MS = 1_000_000
S = 1_000_000_000
T0 = 1_795_572_505_053_254_099
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def entry(service: str, at_ns: int, named: bool = False) -> tuple[LogLine, bool]:
    return LogLine(f"l-{service}-{at_ns}", at_ns, "x", service, "info", {}), named


def direct(entries: list[tuple[LogLine, bool]], services: set[str], window: Window, limit: int) -> tuple[list[str], bool]:
    """What Loki + fetch_untraced give for one window: the oldest `limit` entries, those naming a trace dropped."""
    inside = sorted((e for e in entries if e[0].service in services and window.start_ns <= e[0].timestamp_ns <= window.end_ns),
                    key=lambda e: e[0].timestamp_ns)
    return [line.id for line, named in inside[:limit] if not named], len(inside) >= limit


def test_a_window_cut_out_of_a_wider_answer_is_what_its_own_lookup_gives() -> None:
    rng = random.Random(7)
    services = ("api", "auth", "db")
    entries = sorted((entry(rng.choice(services), T0 + rng.randrange(0, 3 * S), rng.random() < 0.2) for _ in range(400)),
                     key=lambda e: e[0].timestamp_ns)
    wide = aligned(Window(T0, T0 + 3 * S))
    answer = LinesAnswer(wide, None, tuple(entries), cut=False)
    for _ in range(200):
        start = T0 + rng.randrange(0, 2 * S)
        window, wanted, limit = Window(start, start + rng.randrange(1, S)), set(rng.sample(services, 2)), rng.choice((5, 50, 500))
        got = lines_within(answer, sorted(wanted), window, limit)
        assert got is not None
        assert ([line.id for line in got.value], got.truncated) == direct(entries, wanted, window, limit)


def test_a_cut_answer_only_tells_what_lies_before_its_last_line() -> None:
    entries = tuple(entry("api", T0 + i * MS) for i in range(100))  # Loki gave the oldest 100 of more
    answer = LinesAnswer(Window(T0, T0 + S), frozenset({"api"}), entries, cut=True)
    before = lines_within(answer, ["api"], Window(T0 + 10 * MS, T0 + 50 * MS), 500)
    assert before is not None and len(before.value) == 41 and not before.truncated
    assert lines_within(answer, ["api"], Window(T0 + 90 * MS, T0 + 200 * MS), 500) is None  # lines after 99 ms unknown
    full = lines_within(answer, ["api"], Window(T0 + 50 * MS, T0 + 200 * MS), 10)  # its own limit is reached before
    assert full is not None and len(full.value) == 10 and full.truncated
    assert lines_within(answer, ["auth"], Window(T0, T0 + 10 * MS), 5) is None  # other services were not asked for
    assert lines_within(answer, ["api"], Window(T0 - MS, T0 + 10 * MS), 5) is None  # nor earlier times


def test_a_shared_search_answers_as_the_search_of_one_window_would() -> None:
    spans = {"t1": ((T0, T0 + 10 * MS),), "t2": ((T0 + 2 * S, T0 + 2 * S + MS),), "own": ((T0 + 5 * MS, T0 + 6 * MS),)}
    answer = SearchAnswer(Window(T0 - S, T0 + 3 * S), spans, complete=True)
    assert spans_within(answer, Window(T0 - 100 * MS, T0 + 100 * MS), "own", 50) == (True, [(T0, T0 + 10 * MS)])
    assert spans_within(answer, Window(T0 - 100 * MS, T0 + 100 * MS), "own", 2) == (True, None)  # depth reached: unknown
    assert spans_within(answer, Window(T0 - 2 * S, T0), "own", 50) == (False, None)  # not covered
    assert spans_within(SearchAnswer(answer.window, spans, complete=False), Window(T0, T0 + MS), "own", 50) == (False, None)
    assert spans_within(SearchAnswer(answer.window, {}, False, known=False), Window(T0, T0 + MS), "own", 50) == (True, None)


def test_joint_windows_merge_near_ones_and_keep_far_ones_apart() -> None:
    near = [Window(T0 + i * 3 * S, T0 + i * 3 * S + S) for i in range(5)]
    assert clusters(near) == [Window(T0, T0 + 13 * S)]
    far = [Window(T0, T0 + S), Window(T0 + 3600 * S, T0 + 3601 * S)]
    assert clusters(far) == far


async def test_concurrent_lookups_share_one_query_and_a_failed_one_is_not_kept() -> None:
    calls: list[Window] = []

    async def fetch(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        calls.append(window)
        await asyncio.sleep(0.01)
        if len(calls) == 2:
            raise OSError("boom")
        return LinesAnswer(window, services, (entry("api", T0 + 5 * MS),), cut=False)

    shared = SharedLookups(60)
    first = await asyncio.gather(*(shared.lines(fetch, ["api"], Window(T0 + i * MS, T0 + 100 * MS), 10, None) for i in range(5)))
    assert len(calls) == 1 and [len(r.value) for r in first] == [1] * 5
    assert aligned(Window(T0, T0 + 100 * MS)) == calls[0]
    with pytest.raises(OSError):  # another tenant's: asked on its own, and it fails
        await shared.lines(fetch, ["api"], Window(T0, T0 + 100 * MS), 10, "other")
    again = await shared.lines(fetch, ["api"], Window(T0, T0 + 100 * MS), 10, "other")
    assert len(calls) == 3 and len(again.value) == 1  # the failure was not kept


# ------------------------------------------------------------------------------ through the service


async def service(aiohttp_server: Any, aiohttp_client: Any, search_delay: float = 0.0, **env: str) -> tuple[Any, Any]:
    from correlator.api import create_app
    from tests.apiclient import Backends, otlp_trace

    extra = [Entry(T0 + 10 * MS, "validating token for user 42", {"service_name": "auth-service", "level": "info"})]
    loki = await aiohttp_server(make_fake_loki_app(tenants={"t": [*recorded_entries(), *extra]}))
    settings = load_settings(environ={"CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}", "CORRELATOR_LOKI_TENANT": "t",
                                      "CORRELATOR_CACHE_MAX_ENTRIES": "0", **env})
    backends = Backends()

    def jaeger(request: httpx.Request) -> httpx.Response:  # the trace; no other traces in any search
        if request.url.path == "/api/v3/traces":
            return httpx.Response(200, json={"result": {"resourceSpans": []}})
        return httpx.Response(200, json=otlp_trace())
    backends.jaeger = jaeger
    transports = {k: v for k, v in backends.transports().items() if k != "loki"}
    if search_delay:
        inner = transports["jaeger"]

        class Slow(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if request.url.path == "/api/v3/traces":
                    await asyncio.sleep(search_delay)
                return await inner.handle_async_request(request)
        transports["jaeger"] = Slow()
    client = await aiohttp_client(create_app(settings, transports))
    return client, loki


def untraced_queries(loki: Any) -> list[Any]:
    from tests.fakes.loki import REQUESTS
    return [r for r in loki.app[REQUESTS] if 'trace_id=""' in r.query.get("query", "")]


async def test_closing_ends_the_lookups_still_running_and_keeps_none() -> None:
    ended: list[str] = []

    async def never(what: str) -> Any:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append(what)  # where a real query releases its connection

    async def lines(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        return await never("lines")  # type: ignore[no-any-return]

    async def search(service: str, window: Window, depth: int) -> SearchAnswer:
        return await never("search")  # type: ignore[no-any-return]

    shared = SharedLookups(60)
    shared.prefetch_lines(lines, Window(T0, T0 + S), None, None)
    shared.prefetch_search(search, "api", Window(T0, T0 + S), 20, None)
    await asyncio.sleep(0)
    await shared.aclose()
    assert sorted(ended) == ["lines", "search"]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert shared.lines_now(["api"], Window(T0, T0 + S), 10, None) is None  # nothing kept


async def test_correlations_of_one_moment_share_the_lookups_and_get_the_same_answer(aiohttp_server: Any,
                                                                                  aiohttp_client: Any) -> None:
    shared, loki = await service(aiohttp_server, aiohttp_client)
    alone, loki_alone = await service(aiohttp_server, aiohttp_client, CORRELATOR_JOIN_UNTRACED_SHARE_SECONDS="0")
    bodies = [await (await shared.get(f"/correlate/{TRACE}")).json() for _ in range(3)]
    single = await (await alone.get(f"/correlate/{TRACE}")).json()
    assert len(untraced_queries(loki)) == 1 and len(untraced_queries(loki_alone)) == 1
    for body in bodies:
        assert body["summary"]["untraced"] == single["summary"]["untraced"]
        assert body["summary"]["untraced"]["by_confidence"]["high"] == 1
        inferred = [(e["line"], e["span_id"], e["confidence"]) for e in body["logs"] if e["match"] == "inferred"]
        assert inferred == [(e["line"], e["span_id"], e["confidence"]) for e in single["logs"] if e["match"] == "inferred"]


async def test_with_a_hint_a_slow_search_does_not_hold_the_answer(aiohttp_server: Any, aiohttp_client: Any) -> None:
    # The search takes 5 s: a correlation on a slow, busy machine (a few tenths of a second) still ends long before it,
    # so the search is `late` whatever the machine (with 1 s it could end first, and the answer hold it).
    client, loki = await service(aiohttp_server, aiohttp_client, search_delay=5.0, CORRELATOR_CACHE_MAX_ENTRIES="100")
    hint = f"start={(T0 - 5 * MS) // 1000}&end={(T0 + 150 * MS) // 1000}"
    started = time.monotonic()
    body = await (await client.get(f"/correlate/{TRACE}?{hint}")).json()
    assert time.monotonic() - started < 2.5  # not held by the search
    untraced = body["summary"]["untraced"]
    assert untraced["status"] == "ok" and untraced["overlap_check"] == "late"
    # the lines are all there (asked at once, every service, over the hint's window), attached at most medium
    assert [(e["line"], e["confidence"]) for e in body["logs"] if e["match"] == "inferred"] == \
        [("validating token for user 42", "medium")]
    assert len(untraced_queries(loki)) == 1
    again = await (await client.get(f"/correlate/{TRACE}?{hint}")).json()
    assert not again["cached"]  # an answer that may learn more (`high`) a moment later is not kept


async def test_a_search_left_running_ends_with_the_service(aiohttp_server: Any, aiohttp_client: Any) -> None:
    """A shared lookup outlives the correlation that started it, never the service: closed, the service
    ends it before its backend clients close (it would talk to a closed client, or hold a socket, after)."""
    client, _loki = await service(aiohttp_server, aiohttp_client, search_delay=30.0)
    hint = f"start={(T0 - 5 * MS) // 1000}&end={(T0 + 150 * MS) // 1000}"
    body = await (await client.get(f"/correlate/{TRACE}?{hint}")).json()
    assert body["summary"]["untraced"]["overlap_check"] == "late"  # answered; the search goes on, shared
    assert "Correlator._search_query.<locals>.query" in running_here()
    await client.close()
    assert running_here() == set()


def running_here() -> set[str]:
    """The tasks still running, but the fake Loki's connection handlers (the fixture closes that server later)."""
    names = {t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}  # type: ignore[union-attr]
    return {name for name in names if not name.startswith("RequestHandler.")}


async def test_a_search_answer_is_read_as_the_whole_json_reads_it() -> None:
    """Jaeger's v3 answer shape (upstream snapshot, plus a second service and a base64 ID): only the fields
    the search needs are decoded, with the same result as walking the whole JSON."""
    import copy
    import json

    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from tests.conftest import FIXTURES, closed_after_test

    body = json.loads((FIXTURES / "upstream" / "jaeger" / "api_v3_GetTrace.snapshot.json").read_text())
    other = copy.deepcopy(body["result"]["resourceSpans"][0])
    other["resource"] = {"attributes": [{"key": "service.name", "value": {"stringValue": "db"}}]}
    for scope in other["scopeSpans"]:
        for raw in scope["spans"]:
            raw["traceId"] = "AAECAwQFBgcICQoLDA0ODw=="  # base64 of 000102…0f
            raw["startTimeUnixNano"], raw["endTimeUnixNano"] = "1000", "2000"
    body["result"]["resourceSpans"].append(other)

    def walk(service: str) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        for rs in body["result"]["resourceSpans"]:
            name = next((a["value"].get("stringValue") for a in (rs.get("resource") or {}).get("attributes") or ()
                         if a["key"] == "service.name"), None)
            for scope in rs["scopeSpans"]:
                for raw in scope["spans"]:
                    trace = raw["traceId"] if len(raw["traceId"]) == 32 else "000102030405060708090a0b0c0d0e0f"
                    spans = out.setdefault(trace, [])
                    if name == service:
                        spans.append((int(raw["startTimeUnixNano"]), int(raw["endTimeUnixNano"])))
        return out

    settings = load_settings(environ={"CORRELATOR_JAEGER_RETRY_ATTEMPTS": "1"}).jaeger
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    jaeger = JaegerSource(settings, closed_after_test(make_client(settings, transport)))
    for service in ("db", "nobody"):
        answer = await jaeger.service_traces(service, Window(T0, T0 + S), 50)
        assert {t: list(v) for t, v in answer.traces.items()} == walk(service) and answer.complete
    assert (await jaeger.service_traces("db", Window(T0, T0 + S), 2)).complete is False  # depth reached


async def test_a_shared_answer_cut_before_the_window_sends_the_correlation_to_its_own_query() -> None:
    asked: list[tuple[Window, int]] = []

    async def fetch(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        asked.append((window, limit))
        first = window.start_ns + (0 if limit > 10 else 400 * MS)  # the wide one is filled by early lines
        return LinesAnswer(window, services, tuple(entry("api", first + i * MS) for i in range(min(limit, 20))), cut=True)

    found = await SharedLookups(60).lines(fetch, ["api"], Window(T0 + 400 * MS, T0 + 500 * MS), 10, None)
    assert asked[1:] == [(Window(T0 + 400 * MS, T0 + 500 * MS), 10)]  # after the shared one: its own window and limit
    assert len(found.value) == 10 and found.truncated


async def test_an_answer_already_there_is_taken_at_once_and_is_what_waiting_for_it_gives() -> None:
    """`lines_now`/`other_traces_now` (no task, no timeout) answer exactly as `lines`/`other_traces`; while the
    shared query runs, or when it failed, they leave it to those."""
    gate = asyncio.Event()
    fetched: list[Window] = []

    async def fetch(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        fetched.append(window)
        await gate.wait()
        entries = tuple(entry(s, T0 + i * MS, named=i % 7 == 0) for i in range(60) for s in ("api", "db"))
        return LinesAnswer(window, services, tuple(sorted(entries, key=lambda e: e[0].timestamp_ns)), cut=False)

    shared = SharedLookups(60)
    window = Window(T0 + 5 * MS, T0 + 40 * MS)
    assert shared.lines_now(["api", "db"], window, 10, None) is None  # nothing asked yet
    waiting = asyncio.ensure_future(shared.lines(fetch, ["api", "db"], window, 10, None))
    await asyncio.sleep(0)
    assert shared.lines_now(["api", "db"], window, 10, None) is None  # in flight: the waiting path's to wait for
    gate.set()
    waited = await waiting
    for inside, limit in ((window, 10), (window, 500), (Window(T0 + 20 * MS, T0 + 30 * MS), 3)):
        now = shared.lines_now(["db", "api"], inside, limit, None)
        assert now is not None and now == await shared.lines(fetch, ["db", "api"], inside, limit, None)
    assert shared.lines_now(["api", "db"], window, 10, None) == waited and len(fetched) == 1
    assert shared.lines_now(["api", "db"], window, 10, "other") is None  # another tenant's: never
    assert shared.lines_now(["api"], window, 10, None) is None  # another set of services: `lines` asks its own

    async def failing(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        raise OSError("boom")
    with pytest.raises(OSError):
        await shared.lines(failing, ["api"], window, 10, "t2")
    assert shared.lines_now(["api"], window, 10, "t2") is None  # a failure is never an answer

    spans = {"t1": ((T0, T0 + 10 * MS),), "own": ((T0 + 5 * MS, T0 + 6 * MS),)}

    async def search(service: str, wide: Window, depth: int) -> SearchAnswer:
        return SearchAnswer(wide, spans, complete=True)
    searched = Window(T0 - 100 * MS, T0 + 100 * MS)
    assert shared.other_traces_now("api", searched, "own", 50, None) == (False, None)
    asked = await shared.other_traces(search, "api", searched, "own", 50, None)
    assert shared.other_traces_now("api", searched, "own", 50, None) == (True, asked) == (True, [(T0, T0 + 10 * MS)])
    assert shared.other_traces_now("api", searched, "own", 1, None) == (True, None)  # depth reached: unknown, as asked
    assert shared.other_traces_now("db", searched, "own", 50, None) == (False, None)


@pytest.mark.parametrize("kind", ["lines", "other_traces"])
@pytest.mark.parametrize("waiter_too", [True, False], ids=["waiter-cancelled-too", "only-the-shared-query"])
async def test_a_waiter_cancelled_in_the_turn_its_shared_query_is_cancelled_ends_cancelled(kind: str, waiter_too: bool) -> None:
    """A waiter cancelled (its correlation's deadline, a client gone) in the same loop turn as the shared query it waits
    on must end cancelled: it took the shared query's end for its own, swallowed its cancellation and went on to ask
    Loki or Jaeger on its own, for a caller that had gone. A waiter not cancelled itself asks on its own, as before."""
    asked: list[Window] = []

    async def lines(window: Window, services: frozenset[str] | None, limit: int) -> LinesAnswer:
        asked.append(window)
        if len(asked) == 1:
            await asyncio.sleep(3600)
        return LinesAnswer(window, services, (), False)

    async def search(service: str, window: Window, depth: int) -> SearchAnswer:
        asked.append(window)
        if len(asked) == 1:
            await asyncio.sleep(3600)
        return SearchAnswer(window, {}, True)

    shared = SharedLookups(2.0)
    window = Window(T0, T0 + S)
    waiter: asyncio.Future[Any]
    if kind == "lines":
        shared.prefetch_lines(lines, window, ["api"], None)
        waiter = asyncio.ensure_future(shared.lines(lines, ["api"], window, 10, None))
        query: asyncio.Future[Any] = shared._lines.entries[0].answer
    else:
        shared.prefetch_search(search, "api", window, 10, None)
        waiter = asyncio.ensure_future(shared.other_traces(search, "api", window, "ab" * 16, 10, None))
        query = shared._searches.entries[0].answer
    while not asked:
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the waiter waits on the shared query
    query.cancel()  # first: its task ends in the next turn just before the waiter's step sees its own cancellation
    if waiter_too:
        waiter.cancel()
    await asyncio.wait([waiter])
    if waiter_too:
        assert waiter.cancelled()
        assert len(asked) == 1  # nothing asked on its own behalf
    else:
        assert waiter.result() in ([], SourceResult(())) and len(asked) == 2  # asked on its own: the shared one failed
    await shared.aclose()
