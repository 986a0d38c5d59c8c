"""The Prometheus source against Prometheus's and Grafana's own exemplar answers (MockTransport)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from correlator.config import load_settings
from correlator.errors import SourceHTTPError
from correlator.ids import parse_trace_id
from correlator.model import Window
from correlator.sources._http import make_client
from correlator.sources.prometheus import PrometheusSource, parse_exemplars
from tests.conftest import FIXTURES

U = FIXTURES / "upstream"
LABELS = ("trace_id", "traceID", "trace.id")


def body(path: str) -> Any:
    return json.loads((U / path).read_text())


def source(answer: httpx.Response, **env: str) -> tuple[PrometheusSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    settings = load_settings(environ={"CORRELATOR_PROMETHEUS_RETRY_ATTEMPTS": "1", **env}).prometheus
    return PrometheusSource(settings, make_client(settings, httpx.MockTransport(handle))), seen


def test_docs_example_placeholders_are_not_trace_ids() -> None:
    """The docs' `EpTxMJ40fUus7aGY` values are not hex: skipped and counted, never a crash."""
    found, skipped = parse_exemplars(body("prometheus/query_exemplars.docs_example.json"), LABELS, ("span_id",))
    assert found == [] and skipped == 3


def test_inf_value_and_ms_timestamp() -> None:
    (ex,), _ = parse_exemplars(body("prometheus/query_exemplars.inf_value.json"), LABELS, ("span_id",))
    assert math.isinf(ex.value) and ex.timestamp_ns == 1_234_000_000


def test_grafana_tempo_answer_traceid_label_and_31_char_ids() -> None:
    found, skipped = parse_exemplars(body("grafana/prom_query_exemplars.tempo_spanmetrics.excerpt.json"), LABELS, ("span_id",))
    assert skipped == 0 and len(found) == 42
    short = next(ex for ex in found if ex.labels["traceID"] == "b1cdb01cf2a4954dafa0c3dcfa8ffb4")
    assert short.trace_id == "0b1cdb01cf2a4954dafa0c3dcfa8ffb4" and short.timestamp_ns % 1_000_000 == 0


@pytest.mark.parametrize("asked", ["b1cdb01cf2a4954dafa0c3dcfa8ffb4", "0B1CDB01CF2A4954DAFA0C3DCFA8FFB4"])
async def test_fetch_matches_any_spelling_and_sends_seconds(asked: str) -> None:
    prom, seen = source(httpx.Response(200, json=body("grafana/prom_query_exemplars.tempo_spanmetrics.excerpt.json")))
    window = Window(1_654_086_510_000_000_000, 1_654_086_810_000_000_000)
    result = await prom.fetch(parse_trace_id(asked), window)
    assert [ex.labels["traceID"] for ex in result.value] == ["b1cdb01cf2a4954dafa0c3dcfa8ffb4"]
    params = dict(seen[0].url.params)
    assert params == {"query": '{__name__=~".+"}', "start": "1654086450.000", "end": "1654086870.000"}  # ± 60 s margin


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


async def test_204_without_body_is_empty() -> None:
    """Prometheus 2.x answers a query without series selectors with 204 and no body."""
    prom, _ = source(httpx.Response(204))
    assert (await prom.fetch(parse_trace_id("1"), Window(0, 1))).value == ()
