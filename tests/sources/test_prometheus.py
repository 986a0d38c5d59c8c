"""The Prometheus source against Prometheus's own exemplar answers and a span-metrics one (MockTransport)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlator.config import load_settings
from correlator.errors import SourceHTTPError, SourceProtocolError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.prometheus import PrometheusSource, parse_exemplars
from correlator.timeparams import rfc3339_ns
from tests.conftest import FIXTURES, closed_after_test

U = FIXTURES / "upstream"
LABELS = ("trace_id", "traceID", "trace.id")


SHORT_ID = "e9a4c1b7d3f2a6e8c0b5d4f3a2e1c09"  # 31 characters


def body(path: str) -> Any:
    return json.loads((U / path).read_text())


def own(name: str) -> Any:
    return json.loads((FIXTURES / "own" / name).read_text())


def source(answer: httpx.Response, **env: str) -> tuple[PrometheusSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    settings = load_settings(environ={"CORRELATOR_PROMETHEUS_RETRY_ATTEMPTS": "1", **env}).prometheus
    return PrometheusSource(settings, closed_after_test(make_client(settings, httpx.MockTransport(handle)))), seen


def test_docs_example_placeholders_are_not_trace_ids() -> None:
    """The docs' `EpTxMJ40fUus7aGY` values are not hex: skipped and counted, never a crash."""
    found, skipped = parse_exemplars(body("prometheus/query_exemplars.docs_example.json"), LABELS, ("span_id",))
    assert found == [] and skipped == 3


def test_inf_value_and_ms_timestamp() -> None:
    (ex,), _ = parse_exemplars(body("prometheus/query_exemplars.inf_value.json"), LABELS, ("span_id",))
    assert math.isinf(ex.value) and ex.timestamp_ns == 1_234_000_000


def test_spanmetrics_answer_traceid_label_and_31_char_ids() -> None:
    """Span-metrics exemplars (as Tempo's and others' generators write them): label `traceID`, a trace ID whose
    leading zero was dropped, float seconds printed with trailing zeros."""
    found, skipped = parse_exemplars(own("prom_query_exemplars.spanmetrics_traceID.json"), LABELS, ("span_id",))
    assert skipped == 0 and len(found) == 8
    short = next(ex for ex in found if ex.labels["traceID"] == SHORT_ID)
    assert short.trace_id == "0" + SHORT_ID and short.timestamp_ns == 1_764_590_412_100_000_000


@pytest.mark.parametrize("asked", [SHORT_ID, ("0" + SHORT_ID).upper()])
async def test_fetch_matches_any_spelling_and_sends_seconds(asked: str) -> None:
    prom, seen = source(httpx.Response(200, json=own("prom_query_exemplars.spanmetrics_traceID.json")))
    window = Window(1_764_590_400_000_000_000, 1_764_590_700_000_000_000)
    result = await prom.fetch(parse_trace_id(asked), window)
    assert [ex.labels["traceID"] for ex in result.value] == [SHORT_ID]
    params = dict(seen[0].url.params)
    assert params == {"query": '{__name__=~".+"}', "start": "1764590340.000", "end": "1764590760.000"}  # ± 60 s margin


async def test_error_envelope_names_type_and_message() -> None:
    prom, _ = source(httpx.Response(400, json={"status": "error", "errorType": "bad_data",
                                               "error": 'invalid parameter "start": cannot parse "x" to a valid timestamp'}))
    with pytest.raises(SourceHTTPError, match='400 bad_data from GET /api/v1/query_exemplars: invalid parameter "start"'):
        await prom.fetch(parse_trace_id("1"), Window(0, 1))


async def test_no_data_key_is_an_empty_success() -> None:
    """A query without selectors answers `{"status":"success"}` with no data at all."""
    prom, _ = source(httpx.Response(200, json={"status": "success"}))
    assert (await prom.fetch(parse_trace_id("1"), Window(0, 1))).value == ()


async def test_max_exemplars_truncates() -> None:
    same_trace = {"status": "success", "data": [{"seriesLabels": {"__name__": "x_bucket", "le": str(le)},
                                                 "exemplars": [{"labels": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
                                                                "value": "0.1", "timestamp": 1795572505.1 + le}]} for le in (1, 2, 3)]}
    prom, _ = source(httpx.Response(200, json=same_trace), CORRELATOR_PROMETHEUS_MAX_EXEMPLARS="2")
    result = await prom.fetch(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"), Window(0, 2 * 10**18))
    assert result.truncated and [ex.series["le"] for ex in result.value] == ["1", "2"]  # oldest first
    assert result.cut == ("kept the oldest 2 of 3 exemplars (prometheus.max_exemplars): those from "
                          f"{rfc3339_ns(1795572508_100_000_000)} on are not shown")


async def test_204_without_body_is_empty() -> None:
    """Prometheus 2.x answers a query without series selectors with 204 and no body."""
    prom, _ = source(httpx.Response(204))
    assert (await prom.fetch(parse_trace_id("1"), Window(0, 1))).value == ()


# --------------------------------------------------------------------------------------------
# Request details, reverse lookup, health, and exact timestamps.

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def answer(*series: tuple[dict[str, str], list[tuple[str, str, float]]]) -> dict[str, Any]:
    """A success answer; each exemplar given as (trace_id, value, timestamp)."""
    return {"status": "success", "data": [
        {"seriesLabels": labels, "exemplars": [{"labels": {"trace_id": t, "span_id": "00F067AA0BA902B7"}, "value": v, "timestamp": ts}
                                               for t, v, ts in exemplars]}
        for labels, exemplars in series]}


async def test_tenant_goes_out_as_x_scope_orgid_and_only_when_given() -> None:
    prom, seen = source(httpx.Response(200, json=answer()))
    await prom.fetch(parse_trace_id(TRACE), Window(0, 10**9), tenant="team-a")
    await prom.fetch(parse_trace_id(TRACE), Window(0, 10**9))
    assert seen[0].headers["X-Scope-OrgID"] == "team-a" and "X-Scope-OrgID" not in seen[1].headers


async def test_a_16_char_label_matches_the_padded_id_and_span_ids_are_normalised() -> None:
    """A 64-bit ID written with 16 characters is the same trace as its 32-character form."""
    prom, _ = source(httpx.Response(200, json=answer(({"__name__": "http_requests_total"}, [("7b4c2d9e1f3a5b6c", "1", 1.5)]))))
    result = await prom.fetch(parse_trace_id("00000000000000007b4c2d9e1f3a5b6c"), Window(0, 2 * 10**9))
    [ex] = result.value
    assert ex.labels["trace_id"] == "7b4c2d9e1f3a5b6c" and ex.span_id == "00f067aa0ba902b7"
    assert (ex.metric, ex.value, ex.timestamp_ns) == ("http_requests_total", 1.0, 1_500_000_000)


async def test_search_lists_newest_first_then_slowest_with_nan_last() -> None:
    """Metric → traces: the query goes as given, no window params when none is given."""
    bucket = {"__name__": "http_server_duration_seconds_bucket", "le": "+Inf"}
    prom, seen = source(httpx.Response(200, json=answer(
        (bucket, [(TRACE, "0.1", 10.0), ("1" * 32, "NaN", 20.0), ("2" * 32, "+Inf", 20.0), ("3" * 32, "0.5", 20.0)]))))
    found = await prom.search("http_server_duration_seconds_bucket", None, None)
    assert [ex.trace_id for ex in found] == ["2" * 32, "3" * 32, "1" * 32, TRACE]
    assert dict(seen[0].url.params) == {"query": "http_server_duration_seconds_bucket"}


async def test_plain_text_error_from_a_proxy_is_an_http_error_naming_the_status() -> None:
    prom, _ = source(httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(SourceHTTPError, match="502 from GET /api/v1/query_exemplars: Bad Gateway"):
        await prom.fetch(parse_trace_id(TRACE), Window(0, 1))


async def test_a_success_status_with_a_non_json_body_is_a_protocol_error() -> None:
    prom, _ = source(httpx.Response(200, text="<html><h1>login</h1></html>"))
    with pytest.raises(SourceProtocolError, match="not JSON"):
        await prom.fetch(parse_trace_id(TRACE), Window(0, 1))


async def test_ready_accepts_200_and_names_anything_else() -> None:
    prom, seen = source(httpx.Response(200, text="Prometheus Server is Ready.\n"))
    await prom.ready()
    assert seen[0].url.path == "/-/ready"
    prom, _ = source(httpx.Response(503, text="Service Unavailable"))
    with pytest.raises(SourceHTTPError, match="503 from GET /-/ready: Service Unavailable"):
        await prom.ready()


@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # ms up to the year 2100
def test_any_millisecond_timestamp_converts_to_ns_exactly(ms: int) -> None:
    """Whatever float Prometheus prints for a ms timestamp becomes ms × 10⁶ ns, no float drift."""
    body = answer(({"__name__": "x_total"}, [(TRACE, "1", ms / 1000)]))
    (ex,), _ = parse_exemplars(body, LABELS, ("span_id",))
    assert ex.timestamp_ns == ms * 1_000_000


async def test_an_infinite_timestamp_is_a_bad_response_not_a_crash() -> None:
    """Found in review: Decimal("Infinity") → OverflowError escaped the parser (a 500 on /exemplars)."""
    from correlator.errors import SourceProtocolError

    weird = {"status": "success", "data": [{"seriesLabels": {"__name__": "x_bucket"}, "exemplars": [
        {"labels": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}, "value": "1", "timestamp": "Infinity"}]}]}
    prom, _ = source(httpx.Response(200, json=weird))
    with pytest.raises(SourceProtocolError, match="malformed exemplar data"):
        await prom.search("x_bucket", None, None)


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.integers(min_value=1, max_value=999))
def test_a_timestamp_finer_than_a_millisecond_keeps_the_digits_it_was_printed_with(ms: int, tenth_us: int) -> None:
    """Not what Prometheus sends (it keeps ms), but a proxy or a file may: the digits as printed, as before."""
    from decimal import Decimal

    seconds = float(f"{ms / 1000:.3f}{tenth_us:03d}")
    body = answer(({"__name__": "x_total"}, [(TRACE, "1", seconds)]))
    (ex,), _ = parse_exemplars(body, LABELS, ("span_id",))
    assert ex.timestamp_ns == int(Decimal(str(seconds)) * 1_000_000_000)


def test_label_values_that_are_not_text_become_text() -> None:
    body = {"status": "success", "data": [{"seriesLabels": {"__name__": "x_bucket"}, "exemplars": [
        {"labels": {"trace_id": TRACE, "attempt": 2, "sampled": None}, "value": "1", "timestamp": 1.5}]}]}
    (ex,), _ = parse_exemplars(body, LABELS, ("span_id",))
    assert ex.labels == {"trace_id": TRACE, "attempt": "2", "sampled": "None"}
