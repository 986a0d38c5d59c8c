"""Pure: attach log lines that carry no trace ID to a span, by service and time, with a confidence.

For a line of service S stamped at t (read on S's clock, so compared with S's own spans; a clock
offset estimated for S against the trace is taken out first, see `skew`):
- candidates: the spans of S in this trace open at t (and on the same host/pod/instance when both
  the line and the span say which);
- none → the line is not attached (it is no evidence about this trace);
- the candidates nest (one request of S in flight, at some depth) → the deepest, and
  - `high` when no other trace of S had a span open at t (Jaeger was asked, `other_traces`) and S
    writes nothing outside requests: a line of S in the fetched window that falls in no span of any
    trace (a scheduler, a health check, a pool) shows that something else writes untraced lines too;
  - `medium` when that is unknown (not asked, or Jaeger did not answer),
  - `low` when another trace of S was running too: the line may be that trace's;
- the candidates branch (parallel work of S in this trace) → their common ancestor, `low`.
Every placement is `match: inferred`; the lines never count as the trace's own.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence

from correlator.model import Confidence, LogLine, Match, Placement, Span, Trace, Window
from correlator.spantree import SpanTree

__all__ = ["OTHER_TRACES_UNKNOWN", "attach_untraced", "common_ancestor", "untraced_window"]

# Per service: the (start, end) of other traces' spans of that service, or None when not known.
OTHER_TRACES_UNKNOWN = None
# Where a line and a span may name the instance that produced them.
_LINE_INSTANCE = ("host", "hostname", "host_name", "pod", "k8s_pod_name", "instance", "service_instance_id")
_SPAN_INSTANCE = ("host.name", "k8s.pod.name", "service.instance.id")


_MAX_QUIET_PAD_NS = 1_000_000_000


def untraced_window(trace: Trace, margin_ns: int, span: Window | None = None) -> Window:
    """Where to look for a trace's untraced lines: its span ± the clock margin, and as long again on each
    side (at most 1 s: the lookup is capped, oldest first), so that lines written outside any request
    (background writers, which cap confidence) show. `span`: the trace's (start, end), when the caller has it."""
    start, end = (trace.start_ns, trace.end_ns) if span is None else (span.start_ns, span.end_ns)  # each a pass over the spans
    pad = margin_ns + min(end - start, _MAX_QUIET_PAD_NS)
    return Window(start - pad, end + pad)


def _instance(values: Mapping[str, object], names: Sequence[str]) -> str | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def common_ancestor(tree: SpanTree, span_ids: Sequence[str]) -> str | None:
    """The deepest span that is an ancestor-or-self of all of `span_ids` (None: different roots)."""
    def chain(sid: str) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        cursor: str | None = sid
        while cursor is not None and cursor in tree.by_id and cursor not in seen:
            seen.add(cursor)
            out.append(cursor)
            cursor = tree.by_id[cursor].parent_span_id
        return out[::-1]  # root first
    chains = [chain(sid) for sid in span_ids]
    found = None
    for level in zip(*chains, strict=False):
        if all(x == level[0] for x in level):
            found = level[0]
        else:
            break
    return found


def _nested(tree: SpanTree, open_ids: Sequence[str]) -> bool:
    deepest = max(open_ids, key=lambda sid: tree.depth.get(sid, 0))
    ancestors: set[str] = set()
    seen: set[str] = set()
    cursor: str | None = deepest
    while cursor is not None and cursor in tree.by_id and cursor not in seen:
        seen.add(cursor)
        ancestors.add(cursor)
        cursor = tree.by_id[cursor].parent_span_id
    return all(sid in ancestors for sid in open_ids)


def _covered(intervals: Sequence[tuple[int, int]], starts: Sequence[int], t: int) -> bool:
    """Any (start, end) with start ≤ t ≤ end; `intervals` sorted by start, `starts` their starts."""
    upto = bisect.bisect_right(starts, t)
    return any(end >= t for _start, end in intervals[:upto])


def _background_writers(lines: Sequence[LogLine], by_service: Mapping[str, Sequence[Span]],
                       others: Mapping[str, tuple[list[tuple[int, int]], list[int]]],
                       clocks: Mapping[str, tuple[int, int]]) -> set[str]:
    """Services with a line in no span of this trace nor of the other traces Jaeger returned."""
    found = set()
    for line in lines:
        service = line.service or ""
        known = others.get(service)
        if known is None or service in found or service not in by_service:
            continue
        offset, margin = clocks.get(service, (0, 0))
        t = line.timestamp_ns + offset
        if not any(s.start_ns - margin <= t <= s.end_ns + margin for s in by_service[service]) and not _covered(*known, t):
            found.add(service)
    return found


def attach_untraced(
    tree: SpanTree,
    lines: Sequence[LogLine],
    other_traces: Mapping[str, Sequence[tuple[int, int]] | None],
    clocks: Mapping[str, tuple[int, int]] | None = None,
) -> list[tuple[LogLine, Placement]]:
    """The lines that can be attached, each with its placement (`match: inferred`, a confidence), in line order.

    `clocks[S]` = (offset, margin): S's clock runs `offset` ns ahead of the lines' (`skew`), known to
    ± `margin`. A line's stamp is moved onto S's clock for the comparison only; no time is changed.
    """
    if not lines:  # the usual case (bench P3): no index of the spans to build for nothing
        return []
    clocks = clocks or {}
    by_service: dict[str, list[Span]] = defaultdict(list)
    for span in tree.by_id.values():
        by_service[span.service].append(span)
    for spans in by_service.values():
        spans.sort(key=lambda s: s.start_ns)
    others: dict[str, tuple[list[tuple[int, int]], list[int]]] = {}
    for service, intervals in other_traces.items():
        if intervals is not None:
            ordered = sorted(intervals)
            others[service] = (ordered, [start for start, _end in ordered])
    background = _background_writers(lines, by_service, others, clocks)
    placements: dict[tuple[str, Confidence], Placement] = {}
    out: list[tuple[LogLine, Placement]] = []
    for line in lines:
        candidates = by_service.get(line.service or "")
        if not candidates:
            continue
        offset, margin = clocks.get(line.service or "", (0, 0))
        t = line.timestamp_ns + offset  # the line's instant on the service's clock
        where = _instance({**line.labels, **line.metadata}, _LINE_INSTANCE)
        open_ids = [s.span_id for s in candidates if s.start_ns - margin <= t <= s.end_ns + margin
                    and (where is None or _instance(s.attributes, _SPAN_INSTANCE) in (None, where))]
        if not open_ids:
            continue
        if _nested(tree, open_ids):
            target = max(open_ids, key=lambda sid: tree.depth.get(sid, 0))
            known = others.get(line.service or "")
            if known is None or line.service in background:
                confidence = Confidence.MEDIUM
            elif _covered(known[0], known[1], t):
                confidence = Confidence.LOW
            else:
                confidence = Confidence.HIGH
        else:
            target = common_ancestor(tree, open_ids) or open_ids[0]
            confidence = Confidence.LOW
        key = (target, confidence)
        placement = placements.get(key)
        if placement is None:
            placement = placements[key] = Placement(target, Match.INFERRED, confidence)
        out.append((line, placement))
    return out
