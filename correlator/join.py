"""Pure: place each log line and exemplar on the span it belongs to.

Rules, in order (DESIGN.md "Matching rules"); each placement records the rule used:
1. the item carries a span ID that exists in the trace → that span;
2. same service, timestamp inside the span ± the clock-skew margin → the deepest such span
   (the most specific operation that was running when the line was written); for a service whose
   clock the trace shows to be off (`skew.estimate_clocks`), its spans are compared at the estimated
   offset, ± the estimate's bounds, instead of the fixed margin — the spans' times stay as reported;
3. otherwise the trace as a whole.

Rule 2 is a sweep over time per service rather than a scan of all spans per item, so a
10k-span trace with 50k log lines costs O((spans + items) · log + items · overlap).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from correlator.construct import fast_constructor
from correlator.model import Exemplar, LogLine, Match, Placement
from correlator.sources import _native
from correlator.spantree import SpanTree

__all__ = ["exemplar_service", "ids_by_span", "join", "lines_by_span", "place"]

_TRACE_LEVEL = Placement(None, Match.TRACE)
# A placement per distinct span ID, each correlation: without the frozen `__init__`'s `object.__setattr__` per field
# (20 of 21 µs of a P3 join went to making them; tests/test_construct.py).
_placement = fast_constructor(Placement)

# Label names that carry the emitting service on a metric series, most specific first.
_SERVICE_LABELS = ("service_name", "service", "service.name", "job")


def exemplar_service(exemplar: Exemplar) -> str | None:
    for label in _SERVICE_LABELS:
        value = exemplar.series.get(label)
        if value:
            return value
    return None


def place(
    tree: SpanTree,
    span_ids: Sequence[str | None],
    services: Sequence[str | None],
    stamps: Sequence[int],
    skew_ns: int,
    clocks: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[Placement, ...]:
    """Place items given as parallel columns (span ID, service, timestamp); the result is parallel too.

    Columns, not a tuple per item: 500k log lines cost 3 lists of pointers instead of 500k tuples.
    """
    exact, complete = _by_span_id(tree, span_ids)
    if complete:
        return tuple(exact)  # type: ignore[arg-type]  # no None in it
    return _by_time(tree, exact, services, stamps, skew_ns, clocks)


def _by_span_id(tree: SpanTree, span_ids: Sequence[str | None]) -> tuple[list[Placement | None], bool]:
    """Rule 1 for every item at C speed: (each item's placement by its span ID or None, whether every item has one)."""
    # Placements are immutable: share one per (span, rule) instead of building one per item. One placement per
    # distinct span ID the trace holds, looked up by `map` (None: not placed by ID).
    known = tree.by_id
    distinct = set(span_ids)
    by_span_id = {span_id: _placement(span_id, Match.SPAN_ID, None) for span_id in distinct
                  if span_id is not None and span_id in known}
    exact: list[Placement | None] = list(map(by_span_id.get, span_ids))  # type: ignore[arg-type]  # None: not placed
    return exact, len(by_span_id) == len(distinct)


def _by_time(
    tree: SpanTree,
    exact: list[Placement | None],
    services: Sequence[str | None],
    stamps: Sequence[int],
    skew_ns: int,
    clocks: Mapping[str, tuple[int, int]] | None,
) -> tuple[Placement, ...]:
    """Rules 2 and 3 for the items rule 1 left unplaced (None in `exact`)."""
    pending: dict[str, list[int]] = defaultdict(list)  # service → item indices
    for index, placed in enumerate(exact):
        if placed is None:
            service = services[index]
            if service:
                pending[service].append(index)
    out: list[Placement] = [_TRACE_LEVEL if placed is None else placed for placed in exact]
    if not pending:
        return tuple(out)

    by_time: dict[str, Placement] = {}
    spans_by_service: dict[str, list[tuple[int, int, int, str]]] = defaultdict(list)
    clocks = clocks or {}
    for sid, span in tree.by_id.items():
        if span.service in pending:
            # A clock shown to run `offset` ahead: the span covers [start - offset, end - offset] on the lines' clock.
            # Its estimate's bounds replace the fixed margin (a 2 s offset known to ± 2 ms is not "± 50 ms").
            offset, margin = clocks.get(span.service, (0, skew_ns))
            # (open, close, -depth, id): a min-heap on -depth yields the deepest open span.
            spans_by_service[span.service].append(
                (span.start_ns - offset - margin, span.end_ns - offset + margin, -tree.depth.get(sid, 0), sid)
            )
    for service, indices in pending.items():
        spans = sorted(spans_by_service.get(service, ()))
        if not spans:
            continue
        indices.sort(key=stamps.__getitem__)  # stable: equal times keep item order
        open_spans: list[tuple[int, int, int, str]] = []  # heap of (-depth, -start, close, id)
        next_span = 0
        for index in indices:
            ts = stamps[index]
            while next_span < len(spans) and spans[next_span][0] <= ts:
                opened, closes, neg_depth, sid = spans[next_span]
                heapq.heappush(open_spans, (neg_depth, -opened, closes, sid))
                next_span += 1
            # The top is the deepest span opened so far. Drop it while it has closed: timestamps
            # only grow, so it can never match again. Closed spans buried below are shallower
            # and are dropped the same way when they surface.
            while open_spans and open_spans[0][2] < ts:
                heapq.heappop(open_spans)
            if open_spans:
                sid = open_spans[0][3]
                placed = by_time.get(sid)
                if placed is None:
                    placed = by_time[sid] = _placement(sid, Match.TIME, None)
                out[index] = placed
            # else: no span of that service was running → stays at trace level
    return tuple(out)


def join(
    tree: SpanTree,
    logs: Sequence[LogLine],
    exemplars: Sequence[Exemplar],
    clock_skew_ms: float,
    clocks: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[tuple[Placement, ...], tuple[Placement, ...]]:
    """`clocks`: per service (offset, margin) from `skew.estimate_clocks`, for log lines. Exemplars are
    stamped by the instrumented process itself (its own clock, like its spans): the fixed margin."""
    skew_ns = int(clock_skew_ms * 1_000_000)
    # The services and timestamps only when rule 1 leaves a line unplaced (a trace's OTLP lines carry their span ID).
    exact, complete = _by_span_id(tree, [log.span_id for log in logs])
    log_places: tuple[Placement, ...] = (
        tuple(exact) if complete  # type: ignore[arg-type]  # complete: no None in it
        else _by_time(tree, exact, [log.service for log in logs], [log.timestamp_ns for log in logs], skew_ns, clocks))
    exemplar_places = place(tree, [ex.span_id for ex in exemplars], [exemplar_service(ex) for ex in exemplars],
                            [ex.timestamp_ns for ex in exemplars], skew_ns)
    return log_places, exemplar_places


def ids_by_span(items: Sequence[LogLine | Exemplar], places: Sequence[Placement]) -> Mapping[str, list[str]]:
    """span_id → ids of the items placed on it, in item order."""
    if not items:
        return {}  # most answers infer no line: no defaultdict to make
    by_span: dict[str, list[str]] = defaultdict(list)
    _group(by_span, items, places, "id")
    return by_span


def lines_by_span(lines: Sequence[LogLine], places: Sequence[Placement]) -> dict[str, list[LogLine]]:
    """span_id → the lines placed on it, in line order (the analysis's evidence)."""
    by_span: dict[str, list[LogLine]] = {}
    _group(by_span, lines, places, None)
    return by_span


def _group(out: dict[str, list[Any]], items: Sequence[Any], places: Sequence[Placement], field: str | None) -> None:
    """Fills the empty `out`: each item (or its `field`) under its placement's span ID. Natively when the extension
    can (native/src/group.rs: the same dict, ~5× faster on 5k lines); `_group_python` is the reference."""
    native = getattr(_native.MODULE, "group_by_span", None)
    if native is None or not native(out, items, places, field):
        _group_python(out, items, places, field)


def _group_python(out: dict[str, list[Any]], items: Sequence[Any], places: Sequence[Placement], field: str | None) -> None:
    for item, placement in zip(items, places, strict=True):
        if placement.span_id is not None:
            out.setdefault(placement.span_id, []).append(item if field is None else getattr(item, field))
