"""Where one trace stands in its series: for each exemplar it left, the share of the series'
observations in the five minutes around it that were faster ("slower than ~97 % of
http_server_duration_seconds{route="/api/courses"} between 10:40 and 10:45").

Computed from the histogram's buckets with the Prometheus query API:
`sum by (le) (increase(<series>_bucket{…}[5m]))` evaluated 2.5 minutes after the exemplar, so
the window is centred on it. Inside the exemplar's bucket the rank is interpolated linearly, as
`histogram_quantile` does; in the +Inf bucket only "at least" can be said. A metric that is not
a histogram bucket series has no such distribution: its standing is "unknown".
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from correlator.construct import fast_constructor
from correlator.model import Exemplar, Span, Window

__all__ = ["WINDOW_NS", "Buckets", "Standing", "buckets_of", "histogram_query", "root_exemplar", "series_label", "standing_in",
           "standing_of", "unknown"]

WINDOW_NS = 5 * 60 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class Standing:
    exemplar_id: str
    known: bool
    series: str  # the series, PromQL-style, without `le`
    window: Window  # the 5 minutes around the exemplar
    bucket: str | None = None  # "(0.1, 0.25]"
    faster_share: float | None = None  # share of the window's observations faster than this one
    at_least: bool = False  # the +Inf bucket: no upper bound to interpolate to
    observations: float = 0.0  # in the window
    reason: str | None = None  # why unknown


def series_label(metric: str, series: Mapping[str, str]) -> str:
    # A route's exemplars share their series: its label is written once (json.dumps per label, twice per correlation; bench P3).
    try:
        return _series_label(metric, tuple(series.items()))
    except TypeError:  # a value that cannot be a cache key: written each time, as it always was
        return _series_label.__wrapped__(metric, tuple(series.items()))


@functools.lru_cache(maxsize=1024)
def _series_label(metric: str, series: tuple[tuple[str, str], ...]) -> str:
    base = metric[: -len("_bucket")] if metric.endswith("_bucket") else metric
    labels = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(series) if k not in ("__name__", "le"))
    return f"{base}{{{labels}}}"


def histogram_query(exemplar: Exemplar) -> str | None:
    """The bucket counts of the exemplar's series over 5 minutes; None when it is no histogram bucket."""
    if not exemplar.metric.endswith("_bucket") or "le" not in exemplar.series:
        return None
    # The exemplars of one busy route share a series: its query is written once (json.dumps per label is
    # ~11 µs a query, asked twice per exemplar per correlation; bench P3).
    return _histogram_query(exemplar.metric, tuple(exemplar.series.items()))


@functools.lru_cache(maxsize=1024)
def _histogram_query(metric: str, series: tuple[tuple[str, str], ...]) -> str:
    matchers = [f"__name__={json.dumps(metric)}"]
    matchers += [f"{k}={json.dumps(v)}" for k, v in sorted(series) if k not in ("__name__", "le")]
    return f"sum by (le) (increase({{{','.join(matchers)}}}[5m]))"


def window_of(exemplar: Exemplar) -> Window:
    return Window(exemplar.timestamp_ns - WINDOW_NS // 2, exemplar.timestamp_ns + WINDOW_NS // 2)


# Without the frozen `__init__`'s `object.__setattr__` per field (one or two per correlation; every field positional).
_new_standing = fast_constructor(Standing)


def unknown(exemplar: Exemplar, reason: str) -> Standing:
    return _new_standing(exemplar.id, False, series_label(exemplar.metric, exemplar.series), window_of(exemplar), None, None,
                         False, 0.0, reason)


def _bound(raw: str) -> float:
    return math.inf if raw in ("+Inf", "Inf", "inf") else float(raw)


# A histogram's buckets as `standing_in` reads them: (upper bound, cumulative count, the bucket's label) in the order of
# the bounds; or, when an `le` is no number, why no standing can be read from them.
Buckets = tuple[tuple[float, float, str], ...] | str


def buckets_of(buckets: Sequence[tuple[str, float]]) -> Buckets:
    """`buckets` ((le, cumulative count) as Prometheus answered them, any order) read once for every exemplar and
    correlation that shares the answer (standing_run.py keeps this form of it: bench P3)."""
    try:
        cumulative = sorted((_bound(le), count) for le, count in buckets)
    except ValueError:
        return "the histogram's `le` labels are not numbers"
    out, lower = [], -math.inf
    for upper, count in cumulative:
        out.append((upper, count, f"({'-Inf' if lower == -math.inf else f'{lower:g}'}, {'+Inf' if upper == math.inf else f'{upper:g}'}]"))
        lower = upper
    return tuple(out)


def standing_of(exemplar: Exemplar, buckets: Sequence[tuple[str, float]]) -> Standing:
    """`buckets`: (le, cumulative count in the window) as Prometheus answered them, any order."""
    return standing_in(exemplar, buckets_of(buckets))


def standing_in(exemplar: Exemplar, cumulative: Buckets) -> Standing:
    """`standing_of` from the buckets as `buckets_of` reads them."""
    if isinstance(cumulative, str):
        return unknown(exemplar, cumulative)
    if not cumulative or cumulative[-1][0] != math.inf:
        return unknown(exemplar, "no histogram buckets for this series in the 5 minutes around it")
    total = cumulative[-1][1]
    if total <= 0:
        return unknown(exemplar, "the histogram counted no observations in the 5 minutes around it")
    value = exemplar.value
    lower, below = -math.inf, 0.0
    for upper, count, label in cumulative:
        if value <= upper:
            inside = max(0.0, count - below)
            if upper == math.inf:
                rank, at_least = below, True
            else:
                start = 0.0 if lower == -math.inf else lower
                fraction = (value - start) / (upper - start) if upper > start else 1.0
                rank, at_least = below + min(max(fraction, 0.0), 1.0) * inside, False
            return _new_standing(exemplar.id, True, series_label(exemplar.metric, exemplar.series), window_of(exemplar), label,
                                 min(1.0, rank / total), at_least, total, None)
        lower, below = upper, count
    return unknown(exemplar, "the value lies above every bucket")  # unreachable with a +Inf bucket


_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def root_exemplar(template: str, span: Span) -> Exemplar | None:
    """The root span as if it had left an exemplar on a configured latency histogram series
    (`name_bucket{label="$service",…}`): the span's duration in the metric's unit, stamped at its end.
    None when the unit cannot be read from the name."""
    metric, unit_ns, labels = _parsed_template(template)
    if unit_ns is None:
        return None
    fill = {"$service": span.service, "$operation": span.operation}
    series = {"__name__": metric, "le": ""}  # `le` marks it a bucket series; histogram_query drops it
    for name, text in labels:
        for placeholder, actual in fill.items():
            text = text.replace(placeholder, actual)
        series[name] = text
    return Exemplar(f"root-{span.span_id}", metric, series, {}, span.duration_ns / unit_ns, span.end_ns, "", span.span_id)


@functools.lru_cache(maxsize=64)
def _parsed_template(template: str) -> tuple[str, int | None, tuple[tuple[str, str], ...]]:
    """(metric, its unit in ns or None when unreadable, (label, value with placeholders)): read once per
    configured template, not once per correlation."""
    metric, _, rest = template.partition("{")
    unit_ns = 1_000_000 if "_milliseconds" in metric else 1_000_000_000 if "_seconds" in metric else None
    return metric, unit_ns, tuple((name, json.loads(f'"{raw}"')) for name, raw in _LABEL_PAIR.findall(rest))
