"""Gaps: parent time no child explains, and the wire/queue time of each client → server hop."""

from __future__ import annotations

from correlator.model import Finding, Severity, Span
from correlator.spantree import SpanTree, columns
from tests.reference.analysis_v2.common import MS, Context, fmt_ms, label
from tests.reference.analysis_v2.events import wait_of

__all__ = ["gaps", "uncovered"]

_MAX_INTERVALS = 3  # evidence lists the largest few; the message names the largest


def uncovered(tree: SpanTree, parent: str) -> list[tuple[int, int, str | None, str | None]]:
    """(start, end, child before, child after) of each stretch of the parent no child covers."""
    span = tree.by_id[parent]
    out: list[tuple[int, int, str | None, str | None]] = []
    cursor: int = span.start_ns
    before: str | None = None
    for kid in tree.children[parent]:  # by start time
        child = tree.by_id[kid]
        if child.start_ns >= span.end_ns:
            continue  # starts after the parent ended (async): covers none of it
        start, end = max(child.start_ns, span.start_ns), min(child.end_ns, span.end_ns)
        if start > cursor:
            out.append((cursor, start, before, kid))
        if end > cursor:
            cursor, before = end, kid
    if span.end_ns > cursor:
        out.append((cursor, span.end_ns, before, None))
    return out


def _hop_only(tree: SpanTree, span: Span) -> bool:
    """A client span whose children are all remote servers: its uncovered time is the hop's."""
    return span.kind == "client" and all(
        tree.by_id[k].kind == "server" and tree.by_id[k].service != span.service for k in tree.children[span.span_id])


def _parent_gaps(ctx: Context) -> list[Finding]:
    s, tree, out = ctx.settings, ctx.tree, []
    min_ns, min_share = s.gap_min_ms * MS, s.gap_min_share
    cols = columns(tree)
    durations, own, ids, spans = cols.durations, cols.self_ns, cols.ids, cols.spans
    for p in cols.parents:  # spans with children, in the tree's order
        # The gaps of a span add up to its own time (`self_ns`: the same children, clipped alike), so one
        # below the floor rules every gap out before any is looked for: most spans end here.
        duration, own_ns = durations[p], own[p]
        if own_ns < min_ns or duration <= 0 or own_ns < min_share * duration:
            continue
        parent, span = ids[p], spans[p]
        if _hop_only(tree, span):
            continue
        floor = max(min_ns, min_share * duration)
        found = [g for g in uncovered(tree, parent) if g[1] - g[0] >= floor]
        if not found:
            continue
        found.sort(key=lambda g: (g[0] - g[1], g[0]))
        start, end, before, after = found[0]
        intervals = [{"offset_ms": (a - span.start_ns) / MS, "gap_ms": (b - a) / MS, "after_span_id": x,
                      "before_span_id": y} for a, b, x, y in found[:_MAX_INTERVALS]]
        where = f"after {tree.by_id[before].operation}" if before else "before its first child"
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        # The span's own events or log lines during the gap may say what it was doing.
        waited = wait_of(span, ctx.span_logs.get(parent, ()), start, end) if span.events or parent in ctx.span_logs else None
        why = "uninstrumented work or waiting"
        extra: dict[str, str] = {}
        if waited is not None:
            what, text = waited
            quoted = text if len(text) <= 100 else text[:99] + "…"
            why = f"{'waited' if what == 'something' else f'waited for {what}'} ('{quoted}')"
            extra = {"waited_for": what, "wait_text": text}
        out.append(Finding(
            "gap", Severity.WARNING,
            f"{fmt_ms(end - start)} inside {label(span)} covered by no child span, {where} "
            f"({(end - start) / span.duration_ns:.0%} of it){more} — {why}",
            (parent,),
            {"gap_ms": (end - start) / MS, "offset_ms": (start - span.start_ns) / MS, "after_span_id": before,
             "before_span_id": after, "parent_ms": span.duration_ns / MS, "intervals": intervals, **extra},
            impact_ns=sum(b - a for a, b, _x, _y in found) if parent in ctx.held else 0,
        ))
    return out


def _client_server_pairs(tree: SpanTree) -> list[tuple[str, str]]:
    """(client, server child of another service) in the tree's order of clients, each one's children by start.

    Found from the server spans (few) up, not from every client span's children (often most spans) down.
    """
    by_id, children = tree.by_id, tree.children
    clients: set[str] = set()  # the clients that have such a child
    for span in by_id.values():
        if span.kind != "server":
            continue
        parent = by_id.get(span.parent_span_id) if span.parent_span_id is not None else None
        if parent is not None and parent.kind == "client" and parent.service != span.service:
            clients.add(parent.span_id)
    if not clients:
        return []
    ids = columns(tree).ids
    out = []
    for p in columns(tree).parents:  # the spans with children, in the tree's order
        if ids[p] not in clients:
            continue
        client = by_id[ids[p]]
        for kid in children[client.span_id]:  # a cycle's breaker is not its parent's child any more
            server = by_id[kid]
            if server.kind == "server" and server.service != client.service:
                out.append((client.span_id, kid))
    return out


def _hops(ctx: Context) -> list[Finding]:
    s, tree, out = ctx.settings, ctx.tree, []
    floor = s.gap_min_ms * MS
    for sid, kid in _client_server_pairs(tree):
        client, server = tree.by_id[sid], tree.by_id[kid]
        hop = f"{client.service} → {server.service}"
        request_ns, response_ns = server.start_ns - client.start_ns, client.end_ns - server.end_ns
        if min(request_ns, response_ns) <= -floor:  # the server outside its own call: the clocks disagree
            out.append(Finding(
                "gap", Severity.INFO,
                f"clock skew on {hop}: the server span lies {fmt_ms(-min(request_ns, response_ns))} outside "
                f"its client span — offsets on this hop are unreliable",
                (sid, kid), {"hop": hop, "request_ms": request_ns / MS, "response_ms": response_ns / MS,
                             "clock_skew": True}))
            continue
        latency = max(request_ns, 0) + max(response_ns, 0)
        if latency < floor:
            continue
        out.append(Finding(
            "gap", Severity.WARNING,
            f"{fmt_ms(latency)} on the wire or in a queue on {hop} "
            f"(request {fmt_ms(max(request_ns, 0))}, response {fmt_ms(max(response_ns, 0))})",
            (sid, kid), {"hop": hop, "request_ms": request_ns / MS, "response_ms": response_ns / MS},
            impact_ns=min(latency, ctx.held.get(sid, 0)),
        ))
    return out


def gaps(ctx: Context) -> list[Finding]:
    return _parent_gaps(ctx) + _hops(ctx)
