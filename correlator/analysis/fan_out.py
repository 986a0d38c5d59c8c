"""Fan-out: calls that run in parallel (good), calls held to k at a time (a pool), and independent
calls made one after another.

Parallelism is measured per group of same-target siblings (`operation_key`), so ten calls
to one endpoint capped at 3 at a time are not averaged with two unrelated sequential calls.
"""

from __future__ import annotations

import bisect
import heapq
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import partial
from operator import attrgetter

from correlator.analysis.common import MS, Context, by_start, fmt_ms, label, new_finding
from correlator.analysis.identity import OperationKey, known_label, native_function, operation_label, target
from correlator.analysis.n_plus_one import sequential_share
from correlator.model import Finding, Severity, Span
from correlator.spantree import SpanTree, columns

__all__ = ["fan_out"]

_OPERATION, _SPAN_ID = attrgetter("operation"), attrgetter("span_id")

_GOOD_PARALLELISM = 1.5
_MAX_FINDINGS = 10  # per flavour; the ones that matter most are what a person reads
_CAPPED_MIN_CALLS = 4  # fewer calls in "waves" is too little to call a pattern
_HANDOVER_MIN_NS = 1 * MS  # a call starting this close to another's end took its slot
_HANDOVER_SHARE = 0.1  # … or within 10 % of a typical call
_HANDOVER_QUORUM = 0.8  # most queued calls must show the hand-over: jitter forgives a few


def _overlapping(spans: list[Span]) -> int:
    """How many of `spans` overlap at least one sibling."""
    ordered = by_start(spans)
    marked: set[int] = set()
    holder, reach = 0, ordered[0].end_ns
    for i in range(1, len(ordered)):
        if ordered[i].start_ns < reach:
            marked.update((holder, i))
        if ordered[i].end_ns > reach:
            holder, reach = i, ordered[i].end_ns
    return len(marked)


def _overlapping_at(below: Sequence[int], starts: list[int], durations: list[int]) -> int:
    """`_overlapping` of the spans at these positions (siblings by start), read from the tree's columns."""
    ordered = [(starts[k], starts[k] + durations[k]) for k in below]
    ordered.sort()  # by (start, end), as `by_start` (in order already: one pass): spans equal in both are interchangeable
    marked: set[int] = set()
    holder, reach = 0, ordered[0][1]
    for i in range(1, len(ordered)):
        start, end = ordered[i]
        if start < reach:
            marked.update((holder, i))
        if end > reach:
            holder, reach = i, end
    return len(marked)


def _wall_and_work(spans: list[Span]) -> tuple[int, int]:
    """(time any of them ran, the sum of their durations) for siblings already by start time: one pass, no
    sort (the same union as `covered_ns` between the first start and the last end, which clips nothing)."""
    total = covered = 0
    cur_start = cur_end = 0
    first = True
    for sp in spans:
        start, end = sp.start_ns, sp.end_ns
        total += end - start
        if end <= start:
            continue
        if first or start > cur_end:
            if not first:
                covered += cur_end - cur_start
            cur_start, cur_end, first = start, end, False
        elif end > cur_end:
            cur_end = end
    if not first:
        covered += cur_end - cur_start
    return covered, total


def _wall_and_work_at(below: Sequence[int], starts: list[int], durations: list[int]) -> tuple[int, int]:
    """`_wall_and_work` of the spans at these positions (siblings by start), read from the tree's columns."""
    total = covered = 0
    cur_start = cur_end = 0
    first = True
    for k in below:
        duration = durations[k]
        total += duration
        if duration <= 0:
            continue
        start = starts[k]
        end = start + duration
        if first or start > cur_end:
            if not first:
                covered += cur_end - cur_start
            cur_start, cur_end, first = start, end, False
        elif end > cur_end:
            cur_end = end
    if not first:
        covered += cur_end - cur_start
    return covered, total


def _callee(span: Span) -> str:
    peer = span.attributes.get("peer.service") or span.attributes.get("server.address")
    return str(peer) if span.kind == "client" and peer else span.service


def max_concurrency(spans: list[Span]) -> int:
    """Most calls running at once (one ending as another starts is a hand-over, not an overlap)."""
    points = sorted([(sp.start_ns, 1) for sp in spans] + [(sp.end_ns, -1) for sp in spans])
    running = peak = 0
    for _t, delta in points:  # ends (-1) sort before starts (+1) at the same instant
        running += delta
        peak = max(peak, running)
    return peak


def capped(spans: list[Span]) -> tuple[int, int] | None:
    """(at most k at a time, waves) when these same-target calls ran in a pool of k: each call past the
    first k starts as an earlier one ends. None when they were free to run (or ran one by one)."""
    n = len(spans)
    if n < _CAPPED_MIN_CALLS:
        return None
    k = max_concurrency(spans)
    if not 2 <= k < n:
        return None
    ordered = by_start(spans)
    tolerance = max(_HANDOVER_MIN_NS, int(_HANDOVER_SHARE * statistics.median(sp.duration_ns for sp in spans)))
    first_start = ordered[0].start_ns
    later = [sp for sp in ordered[k:] if sp.start_ns - first_start > tolerance]
    if not later:
        return None
    ends = sorted(sp.end_ns for sp in ordered)
    handed_over = 0
    for sp in later:
        i = bisect.bisect_left(ends, sp.start_ns - tolerance)
        if i < len(ends) and ends[i] <= sp.start_ns + tolerance:
            handed_over += 1
    if handed_over < _HANDOVER_QUORUM * len(later):
        return None
    return k, -(-n // k)


def _what(span: Span) -> str:
    return target(span) or operation_label(span)


def _groups(kids: list[str], spans: list[Span], keys: Mapping[str, OperationKey]) -> list[tuple[list[Span], bool]]:
    """Siblings to measure together: each same-target group, and the one-off calls as one more (same target?)."""
    if all(keys[k] == keys[kids[0]] for k in kids):
        return [(spans, True)]
    by_key: dict[OperationKey, list[Span]] = defaultdict(list)
    for kid, sp in zip(kids, spans, strict=True):
        by_key[keys[kid]].append(sp)
    singles = [group[0] for group in by_key.values() if len(group) == 1]
    measured = [(group, True) for group in by_key.values() if len(group) >= 2]
    if len(singles) >= 2:
        measured.append((singles, False))
    return measured


def fan_out(ctx: Context) -> list[Finding]:
    s, tree = ctx.settings, ctx.tree
    in_loops = {sp.span_id for _parent, members, _shape in ctx.n_plus_one for sp in members}
    # (-overlap saved, parent, sequence, children's positions, group, overlapping, Σ, wall, one target?): the first three
    # order them (the sequence keeps ties in the order found, as a stable sort would) and compare in C. The calls are
    # `group` when it is a part of the children, else all the children, made into spans only when shown.
    parallel: list[tuple[int, str, int, Sequence[int], list[Span] | None, int, int, int, bool]] = []
    pools: list[tuple[int, str, list[Span], int, int, int]] = []  # (could save, parent, calls, k, waves, wall)
    sequential: list[tuple[int, str, list[Span], int]] = []  # (could save, parent, calls, Σ)
    # Calls that run more than 1.5× their wall time overlap, so at least two of them do: with the usual
    # threshold of 2 the count is needed only for the findings shown, and is counted for those alone.
    count_now = s.fan_out_min_children > 2
    cols, keys = columns(tree), ctx.keys
    by_position, ids, fewest = cols.spans, cols.ids, max(2, s.fan_out_min_children)
    starts, durations = cols.starts, cols.durations
    operations: list[str] | None = None  # each position's operation, read once when a parent qualifies
    todo: Sequence[int] = cols.parents
    scan = native_function("fan_out_scan") if not count_now else None
    scanned = scan(todo, cols.kids, starts, durations, by_position, ids, fewest, _GOOD_PARALLELISM, _MAX_FINDINGS) \
        if scan is not None else None
    if scanned is not None:
        # Natively (native/src/analysis.rs): the parents of all-different calls in parallel, of which only the ten that
        # save most can be shown, come back as those ten (with how many of their calls overlap); the loop below sees every
        # other parent, in the same order.
        best, todo = scanned
        for p, wall, total, overlapping in best:
            parallel.append((wall - total, ids[p], len(parallel), cols.kids[p], None, overlapping, total, wall, False))
    for p, below in zip(todo, map(cols.kids.__getitem__, todo), strict=True):
        if len(below) < fewest:
            continue
        if operations is None:
            operations = list(map(_OPERATION, by_position))
        parent = ids[p]
        reported = False
        if len(set(map(operations.__getitem__, below))) == len(below):
            # All different calls: one group, no target needed to tell them apart, never a loop; from the columns.
            wall, total = _wall_and_work_at(below, starts, durations)
            spans = None
            if wall > 0 and total > _GOOD_PARALLELISM * wall:
                overlapping = 0
                if count_now:
                    spans = list(map(by_position.__getitem__, below))
                    overlapping = _overlapping(spans)
                if not count_now or overlapping >= s.fan_out_min_children:
                    parallel.append((wall - total, parent, len(parallel), below, None, overlapping, total, wall, False))
                    continue  # calls that overlap are not "one after another"
            if spans is None:
                spans = list(map(by_position.__getitem__, below))
        else:
            # Parallelism is measured per same-target group; distinct one-off calls form one more group.
            spans = list(map(by_position.__getitem__, below))
            for group_spans, same in _groups(tree.children[parent], spans, keys):
                if same and group_spans[0].span_id in in_loops:
                    continue  # a loop: N+1 reports it, and one-by-one calls have no parallelism to measure
                wall, total = _wall_and_work(group_spans)
                pool = capped(group_spans) if same else None
                if pool is not None:
                    saved = wall - max(sp.duration_ns for sp in group_spans)
                    if saved >= s.gap_min_ms * MS:
                        pools.append((saved, parent, group_spans, pool[0], pool[1], wall))
                        reported = True
                    continue
                if wall > 0 and total > _GOOD_PARALLELISM * wall:
                    overlapping = _overlapping(group_spans) if count_now else 0
                    if not count_now or overlapping >= s.fan_out_min_children:
                        parallel.append((wall - total, parent, len(parallel), below, group_spans, overlapping, total, wall, same))
                        reported = True
        if reported:
            continue  # calls that overlap are not "one after another"
        me = by_position[p].service
        calls = [sp for sp in spans if sp.span_id not in in_loops and (sp.kind == "client" or sp.service != me)]
        if len(calls) >= 2 and len({_callee(sp) for sp in calls}) >= 2 and sequential_share(calls) == 1.0:
            sum_calls = sum(sp.duration_ns for sp in calls)
            saved = sum_calls - max(sp.duration_ns for sp in calls)
            if saved >= s.gap_min_ms * MS:
                sequential.append((saved, parent, calls, sum_calls))
    out = []
    for saved, parent, calls, k, waves, wall in sorted(pools, key=lambda c: (-c[0], c[1]))[:_MAX_FINDINGS]:
        call_durations = [sp.duration_ns for sp in calls]
        longest = max(call_durations)
        on_path = sum(ctx.held.get(sp.span_id, 0) for sp in calls)
        out.append(Finding(
            "fan_out", Severity.WARNING,
            f"{len(calls)} calls to {_what(calls[0])} run at most {k} at a time ({waves} waves, {fmt_ms(wall)}); "
            f"unbounded ~{fmt_ms(longest)} — a pool or limit of {k} costs ~{fmt_ms(min(saved, on_path) or saved)}"
            + (" on the critical path" if on_path else ""),
            tuple(sp.span_id for sp in calls),
            {"calls": len(calls), "max_concurrent": k, "waves": waves, "wall_ms": wall / MS,
             "min_ms": min(call_durations) / MS, "max_ms": longest / MS, "saved_ms": saved / MS,
             "parent_span_id": parent, "target": _what(calls[0])},
            impact_ns=min(saved, on_path),
        ))
    # The ten that save most: `sorted(…)[:10]` without sorting every parallel parent of a big trace.
    # (`nsmallest` is `sorted(…)[:n]` when n covers them all, as for a small trace: without its Python frame.)
    shown = sorted(parallel) if len(parallel) <= _MAX_FINDINGS else heapq.nsmallest(_MAX_FINDINGS, parallel)
    out += _parallel_findings(shown, tree, ids, starts, durations, by_position)
    for saved, parent, calls, sum_calls in sorted(sequential, key=lambda c: (-c[0], c[1]))[:_MAX_FINDINGS]:
        out.append(Finding(
            "fan_out", Severity.INFO,
            f"{label(tree.by_id[parent])} calls {', '.join(dict.fromkeys(_callee(sp) for sp in calls))} one after "
            f"another ({fmt_ms(sum_calls)}); if independent, in parallel they could save ~{fmt_ms(saved)}",
            (parent, *(sp.span_id for sp in calls)),
            {"sequential_calls": len(calls), "sum_ms": sum_calls / MS, "saved_ms": saved / MS},
            impact_ns=min(saved, sum(ctx.held.get(sp.span_id, 0) for sp in calls)),
        ))
    return out


# (-overlap saved, parent, sequence, children's positions, group, overlapping, Σ, wall, one target?): `fan_out`'s `parallel`
Shown = tuple[int, str, int, Sequence[int], list[Span] | None, int, int, int, bool]


def _parallel_findings(shown: list[Shown], tree: SpanTree, ids: list[str], starts: list[int], durations: list[int],
                       by_position: list[Span]) -> list[Finding]:
    """The "runs N of its M calls in parallel" findings of the parents shown. Natively (native/src/fan_out.rs) when every
    one is a scanned parent's (distinct calls, overlap counted): the same findings, their numbers' texts by CPython's own
    formatting (tests/test_fan_out_native.py); else, and for anything it hands back, `_parallel_findings_python`."""
    build = native_function("fan_out_parallel_findings") if shown else None
    made: list[Finding] | None = build(shown, tree.by_id, ids, partial(known_label, targets=tree.targets), new_finding, "fan_out", Severity.INFO) \
        if build is not None else None
    return made if made is not None else _parallel_findings_python(shown, tree, ids, starts, durations, by_position)


def _parallel_findings_python(shown: Sequence[Shown], tree: SpanTree, ids: list[str], starts: list[int],
                              durations: list[int], by_position: list[Span]) -> list[Finding]:
    """`_parallel_findings` in Python: the reference."""
    out = []
    for _less, parent, _seq, below, group, overlapping, total, wall, same in shown:
        if group is None:  # all the children, distinct calls: from the columns, no span read but the parent's
            count = len(below)
            overlapping = overlapping or _overlapping_at(below, starts, durations)
            span_ids = (parent, *map(ids.__getitem__, below))
        else:
            count = len(group)
            overlapping = overlapping or _overlapping(group)
            span_ids = (parent, *map(_SPAN_ID, group))
        evidence: dict[str, object] = {"children": count, "overlapping": overlapping,
                                       "parallelism": round(total / wall, 2), "sum_ms": total / MS, "wall_ms": wall / MS}
        if same:
            callee = _what(group[0] if group is not None else by_position[below[0]])
            evidence["target"] = callee
            what = f" to {callee}"
        else:
            what = ""
        out.append(new_finding(
            "fan_out", Severity.INFO,
            f"{known_label(tree.by_id[parent], tree.targets)} runs {overlapping} of its {count} calls{what} in parallel "
            f"(parallelism {total / wall:.1f}×: {fmt_ms(total)} of work in {fmt_ms(wall)}) — good",
            span_ids, evidence, 0,
        ))
    return out
