"""Several traces' lines from one pair of Loki queries, split per trace — the same lines, per
trace, as one lookup per trace would find (the fake Loki is proven equal to the recordings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.logql import line_filter_any_query, metadata_any_query
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.loki import LokiSource
from tests.fakes.loki import REQUESTS, Entry, make_fake_loki_app, scenario

SC = scenario()
T0 = SC["t0_unix_nano"]
TRACE, OTHER = parse_trace_id(SC["trace_id"]), parse_trace_id(SC["other_trace_id"])
UNASKED = "1234567890abcdef1234567890abcdef"
WINDOW = Window(T0, T0 + 145_000_000)
SERVICES = ["api-gateway", "auth-service", "course-service"]
# A line of a trace nobody asked for, and one whose ID only *contains* an asked-for ID's needle.
EXTRA = [Entry(T0 + 40_000_000, f"level=info msg=unrelated trace_id={UNASKED}", {"service_name": "api-gateway"}),
         Entry(T0 + 41_000_000, f"level=info msg=longer trace_id=ff{TRACE.hex}", {"service_name": "api-gateway"})]


@pytest.fixture
async def loki(aiohttp_server: Any) -> AsyncIterator[tuple[LokiSource, Any]]:
    server = await aiohttp_server(make_fake_loki_app(extra=EXTRA))
    settings = replace(load_settings(environ={}).loki, url=f"http://127.0.0.1:{server.port}")
    async with make_client(settings) as client:
        yield LokiSource(settings, client), server


async def test_two_queries_find_every_trace_s_lines_split_per_trace(loki: tuple[LokiSource, Any]) -> None:
    source, server = loki
    many = await source.fetch_many([TRACE, OTHER], WINDOW, SERVICES)
    assert len(server.app[REQUESTS]) == 2
    one_by_one = {t.hex: (await source.fetch(t, WINDOW, SERVICES)).value for t in (TRACE, OTHER)}
    assert many.value == one_by_one
    assert len(many.value[TRACE.hex]) == 8 and len(many.value[OTHER.hex]) == 2
    assert all(UNASKED not in line.line and f"ff{TRACE.hex}" not in line.line for lines in many.value.values() for line in lines)
    assert not many.truncated and many.note is None


async def test_the_queries_match_any_of_the_ids_escaped(loki: tuple[LokiSource, Any]) -> None:
    source, server = loki
    short = parse_trace_id(SC["short_trace_id"])
    await source.fetch_many([TRACE, OTHER, short], WINDOW, SERVICES)
    sent = sorted(r.query["query"] for r in server.app[REQUESTS])
    selector = '{service_name=~"api-gateway|auth-service|course-service"}'
    assert sent == sorted([
        f'{selector} |~ "{"|".join(sorted([TRACE.needle, OTHER.needle, short.needle]))}"',
        f'{selector} | trace_id=~"{short.hex}|{OTHER.hex}|{TRACE.hex}|{short.short}"',
    ])
    # One ID: exactly the single-trace queries.
    assert line_filter_any_query("{a=\"b\"}", ["x" * 16]) == '{a="b"} |= "xxxxxxxxxxxxxxxx"'
    assert metadata_any_query("{a=\"b\"}", ["f" * 32]) == '{a="b"} | trace_id="' + "f" * 32 + '"'
    # Metacharacters in a needle are escaped (IDs never have them, the builder does not assume it).
    assert line_filter_any_query("{a=\"b\"}", ["a.b", "c|d"]) == '{a="b"} |~ "a\\\\.b|c\\\\|d"'


async def test_the_line_limit_grows_with_the_number_of_traces(loki: tuple[LokiSource, Any]) -> None:
    source, server = loki
    await source.fetch_many([TRACE, OTHER], WINDOW, SERVICES)
    assert {r.query["limit"] for r in server.app[REQUESTS]} == {str(2 * source.settings.max_lines)}
