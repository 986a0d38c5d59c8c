"""Prometheus: exemplars from `GET /api/v1/query_exemplars`, the trace-ID match done client-side.

Prometheus cannot filter exemplars by label (reference/backend-apis.md §3.1): it returns every
exemplar of the selected series in the window, and we keep those whose trace-ID label —
`trace_id`, `traceID` (Tempo span metrics), `trace.id` — denotes the requested ID in any
spelling (producers write 64-bit IDs as 16 characters and strip leading zeros, so every value
goes through `ids.parse_trace_id` before it is compared). On the wire `value` is a string
("+Inf" and "NaN" happen) and `timestamp` a float of seconds with millisecond precision.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from correlator.config import PrometheusSettings
from correlator.errors import InvalidTraceId, SourceHTTPError, SourceProtocolError
from correlator.ids import TraceId, normalise_span_id, parse_trace_id
from correlator.model import Exemplar, Window
from correlator.sources import SourceResult
from correlator.sources._http import HttpAnswer, get, parse_json

__all__ = ["ParsedExemplars", "PrometheusSource", "parse_exemplar_answer", "parse_exemplars"]

SOURCE = "prometheus"
EXEMPLARS_PATH = "/api/v1/query_exemplars"
READY_PATH = "/-/ready"
_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class ParsedExemplars:
    """Every exemplar of an answer that names a trace, and how many were left out and why."""

    exemplars: list[Exemplar]
    invalid_trace_ids: int = 0  # a trace-ID label whose value is not 1-32 hex characters
    without_trace_id: int = 0  # no trace-ID label at all: exemplars of some other instrumentation
    invalid_example: str | None = None  # the first bad value, so a note can show what was seen


# ----------------------------------------------------------------------------- wire values


def timestamp_to_ns(raw: object) -> int:
    """An exemplar `timestamp` (seconds) as integer ns, exactly.

    Prometheus stores milliseconds and prints them as a float of seconds; `1654086561.81 * 1e9`
    in binary floating point is off by tens of ns, so floats are rounded to the millisecond they
    denote and strings (other producers, or a JSON parser keeping decimals) are read as decimals.
    """
    if isinstance(raw, bool):  # bool is an int subclass; `true` is no timestamp
        raise ValueError(f"bad exemplar timestamp {raw!r}")
    if isinstance(raw, int):
        return raw * _NS_PER_S
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"bad exemplar timestamp {raw!r}")
        return round(raw * 1000) * _NS_PER_MS
    if isinstance(raw, str):
        try:
            seconds = Decimal(raw.strip())
        except InvalidOperation:
            raise ValueError(f"bad exemplar timestamp {raw!r}") from None
        if not seconds.is_finite():
            raise ValueError(f"bad exemplar timestamp {raw!r}")
        return int(seconds * _NS_PER_S)
    raise ValueError(f"bad exemplar timestamp {raw!r}")


def value_to_float(raw: object) -> float:
    """An exemplar `value`: a string on the wire ("0.12", "+Inf", "NaN"), tolerated as a number."""
    if isinstance(raw, bool):
        raise ValueError(f"bad exemplar value {raw!r}")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        return float(raw)  # Python reads Go's "+Inf", "-Inf" and "NaN" spellings as is
    raise ValueError(f"bad exemplar value {raw!r}")


def _seconds_param(ns: int, round_up: bool) -> str:
    """ns → the float-seconds string Prometheus parses, at its millisecond resolution.

    Prometheus compares exemplar timestamps in ms, inclusive at both ends; flooring `start` and
    ceiling `end` keeps an exemplar stamped in the boundary millisecond inside the window.
    """
    ms = -(-ns // _NS_PER_MS) if round_up else ns // _NS_PER_MS
    return str(Decimal(ms).scaleb(-3))  # exact decimal text, e.g. "1795572505.175"


def _exemplar_id(metric: str, series: Mapping[str, str], timestamp_ns: int, trace_hex: str) -> str:
    # Stable across processes and restarts (no Python hash()), so a cache or a UI can key on it.
    identity = "\x1f".join((metric, "\x1e".join(f"{k}={v}" for k, v in sorted(series.items())),
                            str(timestamp_ns), trace_hex))
    return "ex-" + hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()


def _str_map(raw: object, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{what} is {type(raw).__name__}, not an object")
    return {str(k): str(v) for k, v in raw.items()}


# ----------------------------------------------------------------------------- parsing


def parse_exemplar_answer(
    body: Any, trace_id_labels: Sequence[str], span_id_labels: Sequence[str]
) -> ParsedExemplars:
    """A `query_exemplars` success answer → every exemplar naming a valid trace, plus the counts.

    A selector-less query (`1+1`) answers `{"status":"success"}` with no `data` key at all:
    that is an empty answer, not an error. Raises ValueError on anything else malformed.
    """
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("not a success envelope")
    data = body.get("data")
    if data is None:
        return ParsedExemplars([])
    if not isinstance(data, list):
        raise ValueError(f"data is {type(data).__name__}, not a list")
    out: list[Exemplar] = []
    invalid = without = 0
    example: str | None = None
    for series_entry in data:
        if not isinstance(series_entry, dict):
            raise ValueError("a data entry is not an object")
        series = _str_map(series_entry.get("seriesLabels"), "seriesLabels")
        metric = series.get("__name__", "")
        raw_exemplars = series_entry.get("exemplars") or []
        if not isinstance(raw_exemplars, list):
            raise ValueError("exemplars is not a list")
        for raw in raw_exemplars:
            if not isinstance(raw, dict):
                raise ValueError("an exemplar is not an object")
            labels = _str_map(raw.get("labels"), "exemplar labels")
            trace_raw = next((labels[name] for name in trace_id_labels if name in labels), None)
            if trace_raw is None:
                without += 1
                continue
            try:
                trace_id = parse_trace_id(trace_raw)
            except InvalidTraceId:
                # Prometheus stores whatever the producer wrote (its own docs show
                # "EpTxMJ40fUus7aGY"); such a value can name no trace we could fetch.
                invalid += 1
                example = example or trace_raw[:40]
                continue
            span_id = next((normalise_span_id(labels[name]) for name in span_id_labels if name in labels), None)
            ts_ns = timestamp_to_ns(raw.get("timestamp"))
            out.append(Exemplar(
                id=_exemplar_id(metric, series, ts_ns, trace_id.hex),
                metric=metric,
                series=series,
                labels=labels,
                value=value_to_float(raw.get("value")),
                timestamp_ns=ts_ns,
                trace_id=trace_id.hex,
                span_id=span_id,
            ))
    return ParsedExemplars(out, invalid, without, example)


def parse_exemplars(body: Any, trace_id_labels: Sequence[str], span_id_labels: Sequence[str]) -> list[Exemplar]:
    """Every exemplar of a `query_exemplars` answer whose trace-ID label is a valid ID.

    Invalid IDs are skipped; `parse_exemplar_answer` gives the same list with the counts.
    """
    return parse_exemplar_answer(body, trace_id_labels, span_id_labels).exemplars


def _newest_then_slowest(ex: Exemplar) -> tuple[int, float]:
    slowness = -math.inf if math.isnan(ex.value) else ex.value  # NaN says nothing: last
    return (-ex.timestamp_ns, -slowness)


# ----------------------------------------------------------------------------- the source


class PrometheusSource:
    def __init__(self, settings: PrometheusSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    async def fetch(self, trace_id: TraceId, window: Window, tenant: str | None = None) -> SourceResult[tuple[Exemplar, ...]]:
        """The exemplars of one trace: the selector's exemplars in the widened window, matched here.

        An exemplar is stamped when the observation is made, which may lie a little outside the
        trace's own window (clock skew, batching), hence `margin_seconds`.
        """
        wide = window.widened(round(self.settings.margin_seconds * _NS_PER_S))
        parsed = await self._query(self.settings.exemplar_selector, wide.start_ns, wide.end_ns, tenant)
        mine = [ex for ex in parsed.exemplars if ex.trace_id == trace_id.hex]
        mine.sort(key=lambda ex: (ex.timestamp_ns, ex.metric, ex.id))
        limit = self.settings.max_exemplars
        note = None
        if parsed.invalid_trace_ids:
            note = (f"{parsed.invalid_trace_ids} exemplar(s) in the window carry a trace-ID label that is not "
                    f"1-32 hex characters (e.g. {parsed.invalid_example!r}); ignored")
        return SourceResult(tuple(mine[:limit]), truncated=len(mine) > limit, note=note)

    async def search(self, query: str, start_ns: int | None, end_ns: int | None,
                     tenant: str | None = None) -> list[Exemplar]:
        """Metric → traces: every exemplar of the series `query` selects, newest first, then slowest.

        No bound given → Prometheus' own default (all it holds in memory).
        """
        parsed = await self._query(query, start_ns, end_ns, tenant)
        return sorted(parsed.exemplars, key=_newest_then_slowest)

    async def ready(self) -> None:
        """Raises unless `/-/ready` answers 200 (503 while Prometheus replays its WAL)."""
        answer = await get(self.client, SOURCE, READY_PATH, None, None, 64 * 1024)
        if answer.status != 200:
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET {READY_PATH}: {answer.text(120)}")

    async def _query(self, query: str, start_ns: int | None, end_ns: int | None, tenant: str | None) -> ParsedExemplars:
        params = {"query": query}
        if start_ns is not None:
            params["start"] = _seconds_param(start_ns, round_up=False)
        if end_ns is not None:
            params["end"] = _seconds_param(end_ns, round_up=True)
        headers = {"X-Scope-OrgID": tenant} if tenant else None
        answer = await get(self.client, SOURCE, EXEMPLARS_PATH, params, headers, self.settings.max_response_bytes)
        body = _checked_body(answer)
        try:
            return parse_exemplar_answer(body, self.settings.trace_id_labels, self.settings.span_id_labels)
        except (ValueError, TypeError) as exc:
            raise SourceProtocolError(SOURCE, f"GET {EXEMPLARS_PATH}: malformed exemplar data ({exc})") from None


def _checked_body(answer: HttpAnswer) -> dict[str, Any]:
    """The success envelope, or the error that says best what went wrong."""
    what = f"GET {EXEMPLARS_PATH}"
    ok = 200 <= answer.status < 300
    try:
        body = parse_json(SOURCE, answer, what)
    except SourceProtocolError:
        if ok:
            raise
        # A proxy or an overloaded server in front of Prometheus answers in plain text or HTML:
        # the HTTP status is the news, not the unparsable body.
        raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from {what}: {answer.text(200)}") from None
    if isinstance(body, dict) and body.get("status") == "error":
        # Prometheus' own envelope: errorType bad_data→400, execution→422, timeout→503, …
        raise SourceHTTPError(SOURCE, answer.status,
                              f"{answer.status} {body.get('errorType') or 'error'}: {body.get('error') or '(no message)'}")
    if not ok:
        raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from {what}: {answer.text(200)}")
    if not isinstance(body, dict) or body.get("status") != "success":
        raise SourceProtocolError(SOURCE, f"{what}: HTTP {answer.status} without a success envelope: {answer.text(120)!r}")
    return body
