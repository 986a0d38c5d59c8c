"""`prometheus.parse_exemplars` as it was before issue 14's small-sizes round (tests/test_prometheus_same.py compares)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from hashlib import blake2b
from typing import Any

from correlator.construct import fast_constructor
from correlator.errors import InvalidTraceId
from correlator.ids import TraceId, normalise_span_id, parse_trace_id
from correlator.model import Exemplar

_UNSEEN: Any = object()

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


def _value(raw: Any) -> float:
    text = str(raw)
    return _INFINITIES.get(text, None) or float(text)


_new_exemplar = fast_constructor(Exemplar)  # a 20k-exemplar answer: the `__init__` was a third of the parse


def _text_labels(labels: Mapping[Any, Any]) -> dict[str, str]:
    """Labels as text. Prometheus sends strings: `str.join` checks that in C (TypeError otherwise)."""
    try:
        "".join(labels)
        "".join(labels.values())
    except TypeError:  # a number or null from a proxy in between: its text, as before
        return {str(k): str(v) for k, v in labels.items()}
    return dict(labels)


def parse_exemplars(body: Any, trace_id_labels: Sequence[str], span_id_labels: Sequence[str]) -> tuple[list[Exemplar], int]:
    """Every exemplar with a valid trace ID, and the count of those skipped for a bad ID."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("not a success envelope")
    skipped = 0
    out: list[Exemplar] = []
    # Every exemplar of one trace spells its IDs alike: each distinct spelling checked once (pure functions).
    trace_ids: dict[str, TraceId | None] = {}
    span_ids: dict[str, str | None] = {}
    for series in body.get("data") or ():  # no `data` key at all for selector-less queries
        labels = series.get("seriesLabels") or {}
        metric = str(labels.get("__name__", ""))
        # Per series, not per exemplar: every exemplar of a series shares one labels mapping.
        series_labels = {str(k): str(v) for k, v in labels.items()}
        identity_prefix = f"{metric}|{sorted(labels.items())}|"
        for raw in series.get("exemplars") or ():
            ex_labels = _text_labels(raw.get("labels") or {})
            trace_raw = next((ex_labels[name] for name in trace_id_labels if name in ex_labels), None)
            trace_id = None
            if trace_raw is not None:
                trace_id = trace_ids.get(trace_raw, _UNSEEN)
                if trace_id is _UNSEEN:
                    try:
                        trace_id = parse_trace_id(trace_raw)
                    except InvalidTraceId:
                        trace_id = None
                    trace_ids[trace_raw] = trace_id
            if trace_id is None:
                skipped += 1
                continue
            span_raw = next((ex_labels[n] for n in span_id_labels if n in ex_labels), None)
            span_id = None
            if span_raw is not None:
                span_id = span_ids.get(span_raw, _UNSEEN)
                if span_id is _UNSEEN:
                    span_id = span_ids[span_raw] = normalise_span_id(span_raw)
            ts_ns = _seconds_to_ns(raw.get("timestamp"))
            identity = f"{identity_prefix}{ts_ns}|{trace_id.hex}"
            out.append(_new_exemplar("ex-" + blake2b(identity.encode(), digest_size=8).hexdigest(), metric, series_labels,
                                ex_labels, _value(raw.get("value")), ts_ns, trace_id.hex, span_id))
    return out, skipped
