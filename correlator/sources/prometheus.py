"""Prometheus: `GET /api/v1/query_exemplars`, trace-ID match done client-side.

Prometheus cannot filter exemplars by label (reference/backend-apis.md §3.1): it returns every
exemplar of the selected series in the window, and we keep those whose trace-ID label —
`trace_id`, `traceID` (Tempo span metrics), `trace.id` — denotes the requested ID in any
spelling (real producers strip leading zeros). `value` is a string ("+Inf", "NaN" happen);
`timestamp` is float seconds with ms precision.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from hashlib import blake2b
from typing import Any

import httpx

from correlator.config import PrometheusSettings
from correlator.construct import fast_constructor
from correlator.errors import InvalidTraceId, SourceHTTPError, SourceProtocolError
from correlator.gcpause import without_gc
from correlator.ids import TraceId, normalise_span_id, parse_trace_id
from correlator.model import Exemplar, Window
from correlator.sources import SourceResult, _native
from correlator.sources._http import get, parse_json
from correlator.timeparams import rfc3339_ns

__all__ = ["PrometheusSource", "parse_exemplars"]

SOURCE = "prometheus"
_UNSEEN: Any = object()
PATH = "/api/v1/query_exemplars"


_PLAIN_SECONDS = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,9}))?")  # few enough digits that Decimal is exact too


def _seconds_to_ns(raw: Any) -> int:
    if type(raw) is float and 0.0 <= raw < 1e10:
        # Prometheus keeps milliseconds. When `raw` is the double nearest to N/1000, its shortest text is N/1000
        # (below 1e10 s doubles are far finer than 0.001), so the text path below gives N × 10⁶ too: at an eighth
        # of the cost. Anything else (finer digits, a huge number) takes the text path.
        ms = round(raw * 1000)
        if ms / 1000 == raw:
            return ms * 1_000_000
    # Decimal, not float: 1795572505.198 * 1e9 in binary floating point is off by ~100 ns.
    text = str(raw)
    plain = _PLAIN_SECONDS.fullmatch(text)
    if plain is not None:  # `1795572505.198`: the same integer from the digits, a fifth of the cost
        whole, fraction = plain.groups()
        return int(whole) * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)
    try:
        return int(Decimal(str(raw)) * 1_000_000_000)
    except (InvalidOperation, ValueError, OverflowError):  # "Infinity" from a broken proxy
        raise ValueError(f"bad exemplar timestamp {raw!r}") from None


_INFINITIES = {"+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}


_new_exemplar = fast_constructor(Exemplar)  # a 20k-exemplar answer: the `__init__` was a third of the parse


def _trace_id_or_none(raw: str) -> TraceId | None:
    try:
        return parse_trace_id(raw)
    except InvalidTraceId:
        return None


@without_gc
def parse_exemplars(body: Any, trace_id_labels: Sequence[str], span_id_labels: Sequence[str]) -> tuple[list[Exemplar], int]:
    """Every exemplar with a valid trace ID, and the count of those skipped for a bad ID."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("not a success envelope")
    skipped = 0
    out: list[Exemplar] = []
    # Every exemplar of one trace spells its IDs alike: each distinct spelling checked once (pure functions).
    trace_ids: dict[str, TraceId | None] = {}
    span_ids: dict[str, str | None] = {}
    join, infinities, new_exemplar = "".join, _INFINITIES.get, _new_exemplar
    # The loop below over one series natively (native/src/exemplars.rs), or None: this loop does the series then.
    native = getattr(_native.MODULE, "exemplar_series", None)
    trace_labels, span_labels = tuple(trace_id_labels), tuple(span_id_labels)
    for series in body.get("data") or ():  # no `data` key at all for selector-less queries
        labels = series.get("seriesLabels") or {}
        metric = str(labels.get("__name__", ""))
        # Per series, not per exemplar: every exemplar of a series shares one labels mapping.
        series_labels = {str(k): str(v) for k, v in labels.items()}
        identity_prefix = f"{metric}|{sorted(labels.items())}|"
        if native is not None:
            skipped_here = native(series.get("exemplars") or (), metric, series_labels, identity_prefix, trace_labels, span_labels,
                                  trace_ids, span_ids, _trace_id_or_none, normalise_span_id, _INFINITIES, new_exemplar, out)
            if skipped_here is not None:
                skipped += skipped_here
                continue
        # One exemplar per turn of this loop, the helpers' work inlined (a 20k-exemplar answer: a call each was a
        # third of the parse): `_text_labels`, the first configured label present, `_seconds_to_ns`'s fast path, `_value`.
        for raw in series.get("exemplars") or ():
            raw_labels = raw.get("labels") or {}
            try:
                join(raw_labels)
                join(raw_labels.values())
                ex_labels = dict(raw_labels)
            except TypeError:  # a number or null from a proxy in between: its text, as before
                ex_labels = {str(k): str(v) for k, v in raw_labels.items()}
            trace_raw = None
            for name in trace_id_labels:
                if name in ex_labels:
                    trace_raw = ex_labels[name]
                    break
            trace_id = None
            if trace_raw is not None:
                trace_id = trace_ids.get(trace_raw, _UNSEEN)
                if trace_id is _UNSEEN:
                    trace_id = trace_ids[trace_raw] = _trace_id_or_none(trace_raw)
            if trace_id is None:
                skipped += 1
                continue
            span_raw = None
            for name in span_id_labels:
                if name in ex_labels:
                    span_raw = ex_labels[name]
                    break
            span_id = None
            if span_raw is not None:
                span_id = span_ids.get(span_raw, _UNSEEN)
                if span_id is _UNSEEN:
                    span_id = span_ids[span_raw] = normalise_span_id(span_raw)
            seconds = raw.get("timestamp")
            if type(seconds) is float and 0.0 <= seconds < 1e10 and (ms := round(seconds * 1000)) / 1000 == seconds:
                ts_ns = ms * 1_000_000  # `_seconds_to_ns`'s first case, as it decides it
            else:
                ts_ns = _seconds_to_ns(seconds)
            value_text = str(raw.get("value"))
            value = infinities(value_text, None) or float(value_text)
            identity = f"{identity_prefix}{ts_ns}|{trace_id.hex}"
            out.append(new_exemplar("ex-" + blake2b(identity.encode(), digest_size=8).hexdigest(), metric, series_labels,
                                    ex_labels, value, ts_ns, trace_id.hex, span_id))
    return out, skipped


class PrometheusSource:
    def __init__(self, settings: PrometheusSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    async def _query(self, query: str, start_ns: int | None, end_ns: int | None, tenant: str | None = None) -> list[Exemplar]:
        params = {"query": query}
        if start_ns is not None:
            params["start"] = f"{start_ns / 1e9:.3f}"
        if end_ns is not None:
            params["end"] = f"{end_ns / 1e9:.3f}"
        headers = {"X-Scope-OrgID": tenant} if tenant else None
        answer = await get(self.client, SOURCE, PATH, params, headers, self.settings.max_response_bytes)
        if answer.status == 204:
            return []  # 2.42 answers a query without series selectors with 204 and no body
        try:
            body = parse_json(SOURCE, answer, f"GET {PATH}")
        except SourceProtocolError:
            if answer.status == 200:
                raise
            # A proxy or an overloaded server in front of Prometheus answers in plain text.
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET {PATH}: {answer.text(200)}") from None
        if answer.status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            if isinstance(body, dict) and body.get("status") == "error":
                raise SourceHTTPError(SOURCE, answer.status,
                                      f"{answer.status} {body.get('errorType', 'error')} from GET {PATH}: {body.get('error', '')}")
            raise SourceProtocolError(SOURCE, f"GET {PATH}: HTTP {answer.status} without a success envelope")
        try:
            found, _skipped = parse_exemplars(body, self.settings.trace_id_labels, self.settings.span_id_labels)
        except (ValueError, TypeError, AttributeError) as exc:
            raise SourceProtocolError(SOURCE, f"GET {PATH}: malformed exemplar data ({exc})") from None
        return found

    async def fetch(self, trace_id: TraceId, window: Window, tenant: str | None = None) -> SourceResult[tuple[Exemplar, ...]]:
        margin = int(self.settings.margin_seconds * 1e9)
        wide = window.widened(margin)
        found = await self._query(self.settings.exemplar_selector, wide.start_ns, wide.end_ns, tenant)
        mine = [ex for ex in found if ex.trace_id == trace_id.hex]
        mine.sort(key=lambda ex: (ex.timestamp_ns, ex.metric))
        limit = self.settings.max_exemplars
        if len(mine) <= limit:
            return SourceResult(tuple(mine))
        cut = (f"kept the oldest {limit:,} of {len(mine):,} exemplars (prometheus.max_exemplars): "
               f"those from {rfc3339_ns(mine[limit].timestamp_ns)} on are not shown")
        return SourceResult(tuple(mine[:limit]), truncated=True, cut=cut)

    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[Exemplar, ...]]]:
        """`fetch` for several traces with one query over their joint window, split per trace (by hex)."""
        margin = int(self.settings.margin_seconds * 1e9)
        wide = window.widened(margin)
        found = await self._query(self.settings.exemplar_selector, wide.start_ns, wide.end_ns, tenant)
        split: dict[str, list[Exemplar]] = {t.hex: [] for t in trace_ids}
        for ex in found:
            if ex.trace_id in split:
                split[ex.trace_id].append(ex)
        limit = self.settings.max_exemplars
        for mine in split.values():
            mine.sort(key=lambda ex: (ex.timestamp_ns, ex.metric))
        return SourceResult({hex_: tuple(mine[:limit]) for hex_, mine in split.items()},
                            truncated=any(len(mine) > limit for mine in split.values()))

    async def search(self, query: str, start_ns: int | None, end_ns: int | None, slowest_first: bool = False) -> list[Exemplar]:
        """Metric → traces: exemplars of the selected series, newest first, then slowest first
        (`slowest_first`: by value only, NaN last)."""
        found = await self._query(query, start_ns, end_ns)
        if slowest_first:
            found.sort(key=lambda ex: (-(ex.value if not math.isnan(ex.value) else -math.inf), -ex.timestamp_ns))
        else:
            found.sort(key=lambda ex: (-ex.timestamp_ns, -(ex.value if not math.isnan(ex.value) else -math.inf)))
        return found[: self.settings.max_exemplars]

    async def bucket_counts(self, query: str, at_ns: int, tenant: str | None = None) -> list[tuple[str, float]]:
        """An instant query whose answer is a vector by `le` (histogram buckets) → (le, value) pairs."""
        params = {"query": query, "time": f"{at_ns / 1e9:.3f}"}
        headers = {"X-Scope-OrgID": tenant} if tenant else None
        answer = await get(self.client, SOURCE, "/api/v1/query", params, headers, self.settings.max_response_bytes)
        body = parse_json(SOURCE, answer, "GET /api/v1/query")
        if answer.status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error", "") if isinstance(body, dict) else ""
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET /api/v1/query: {detail}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise SourceProtocolError(SOURCE, "GET /api/v1/query: not a vector answer")
        try:
            return [(str(item["metric"]["le"]), float(item["value"][1])) for item in data["result"]
                    if isinstance(item, dict) and "le" in (item.get("metric") or {})]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SourceProtocolError(SOURCE, f"GET /api/v1/query: malformed sample ({exc})") from None

    async def ready(self) -> None:
        answer = await get(self.client, SOURCE, "/-/ready", None, None, 64 * 1024)
        if answer.status != 200:
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET /-/ready: {answer.text(120)}")
