"""Pure: how far each service's clock is from the others', read from the trace itself.

A server span runs inside the call that caused it: in true time the server starts after its caller's
span starts and ends before it ends. With δ = (server's clock - caller's clock), the reported times
give δ ≤ server.start - caller.start and δ ≥ server.end - caller.end. Every caller/server pair of
two services narrows δ to the intersection of those intervals — the honest estimate, with its bounds
and the number of pairs behind it. (Jaeger's own adjuster shifts spans silently and is off by
default; here nothing is shifted: reported times stay what the backends said.)

Offsets are chained from the root span's service (the trace's reference clock) along these pairs,
their uncertainties added. The join uses them to compare a log line's stamp with a service's spans.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from correlator.construct import fast_constructor
from correlator.model import Finding, Severity, Span
from correlator.sources import _native

__all__ = ["ClockEstimate", "PairSkew", "clock_skew_summary", "estimate_clocks", "skew_findings"]


_finding = fast_constructor(Finding)  # a frozen dataclass's __init__ sets each field through object.__setattr__


@dataclass(frozen=True, slots=True)
class PairSkew:
    """δ = server's clock - caller's clock, for one pair of services."""

    caller: str
    server: str
    low_ns: int  # the largest lower bound (from ends)
    high_ns: int  # the smallest upper bound (from starts)
    pairs: int

    @property
    def consistent(self) -> bool:
        """Some constant offset explains every pair (else: a server outlasted its caller, or the offset drifted)."""
        return self.low_ns <= self.high_ns

    @property
    def skewed(self) -> bool:
        """The clocks demonstrably disagree: no pair is explained without an offset."""
        return self.consistent and (self.low_ns > 0 or self.high_ns < 0)

    @property
    def offset_ns(self) -> int:
        return (self.low_ns + self.high_ns) // 2

    @property
    def margin_ns(self) -> int:
        return abs(self.high_ns - self.low_ns) // 2


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    pairs: tuple[PairSkew, ...] = ()
    # service → (offset of its clock from the reference's, ± margin), for services whose clock is
    # demonstrably off (the chained interval excludes zero); absent: no correction, the fixed margin.
    offsets: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # Server spans that start before / end after their caller's span: only a clock offset explains them.
    skewed_spans: tuple[str, ...] = ()
    # Server spans longer than their caller's: no constant offset explains them.
    impossible_spans: tuple[str, ...] = ()

    def max_offset_ns(self) -> int:
        return max((abs(offset) + margin for offset, margin in self.offsets.values()), default=0)


def estimate_clocks(spans: Sequence[Span], reference_service: str | None,
                    by_id: Mapping[str, Span] | None = None) -> ClockEstimate:
    """`by_id`: the spans indexed by ID when the caller has it (the span tree's), else built here."""
    if by_id is None:
        by_id = {span.span_id: span for span in spans}
    lows: dict[tuple[str, str], int] = {}
    highs: dict[tuple[str, str], int] = {}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    skewed: list[str] = []
    impossible: list[str] = []
    for span in spans:
        if span.kind != "server":
            continue
        caller = by_id.get(span.parent_span_id or "")
        if caller is None or caller.service == span.service:
            continue
        key = (caller.service, span.service)
        low, high = span.end_ns - caller.end_ns, span.start_ns - caller.start_ns
        lows[key] = max(lows.get(key, low), low)
        highs[key] = min(highs.get(key, high), high)
        counts[key] += 1
        if low > high:
            impossible.append(span.span_id)
        elif low > 0 or high < 0:
            skewed.append(span.span_id)
    pairs = tuple(sorted((PairSkew(c, s, lows[(c, s)], highs[(c, s)], n) for (c, s), n in counts.items()),
                         key=lambda p: (p.caller, p.server)))
    return ClockEstimate(pairs, _chain(pairs, reference_service), tuple(skewed), tuple(impossible))


def _chain(pairs: Sequence[PairSkew], reference: str | None) -> dict[str, tuple[int, int]]:
    """Breadth-first from the reference service: offset(S) = offset(caller) + δ, margins added."""
    if reference is None:
        return {}
    edges: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for pair in pairs:
        if pair.consistent:
            edges[pair.caller].append((pair.server, pair.offset_ns, pair.margin_ns))
            edges[pair.server].append((pair.caller, -pair.offset_ns, pair.margin_ns))
    known: dict[str, tuple[int, int]] = {reference: (0, 0)}
    queue = deque([reference])
    while queue:
        here = queue.popleft()
        offset, margin = known[here]
        for there, delta, width in edges[here]:
            if there not in known:
                known[there] = (offset + delta, margin + width)
                queue.append(there)
    # Only a clock shown to be off is corrected; within its bounds of zero, a service keeps the fixed margin.
    return {service: (offset, margin) for service, (offset, margin) in known.items()
            if service != reference and abs(offset) > margin}


_EXACT_NS = 1 << 50


def _ms(ns: int) -> float:
    """`round(ns / 1e6, 3)`, without `round`'s decimal conversion where whole µs give the same float (the proof is
    `analysis.events.offset_ms`'s; tests/test_skew_ms.py): ~16 a small trace's answer, a third of its skew render."""
    if type(ns) is int and 0 <= ns < _EXACT_NS and ns % 1000 != 500:
        return (ns + 500) // 1000 / 1000
    return round(ns / 1_000_000, 3)


def clock_skew_summary(estimate: ClockEstimate | None) -> list[dict[str, object]]:
    """`summary.clock_skew`: one entry per caller → server service pair seen in the trace."""
    if estimate is None:
        return []
    out: list[dict[str, object]] = []
    offsets = estimate.offsets
    for p in estimate.pairs:
        # PairSkew's properties written out (a property call each, five per pair, were half of this summary).
        low, high = p.low_ns, p.high_ns
        consistent = low <= high
        out.append({"caller": p.caller, "server": p.server, "offset_ms": _ms((low + high) // 2) if consistent else None,
                    "min_ms": _ms(low if consistent else high), "max_ms": _ms(high if consistent else low), "pairs": p.pairs,
                    "consistent": consistent, "skewed": consistent and (low > 0 or high < 0),
                    "applied_to_logs": p.server in offsets or p.caller in offsets})
    return out


def skew_findings(estimate: ClockEstimate, spans: Mapping[str, Span]) -> tuple[Finding, ...]:
    """One finding per pair whose clocks demonstrably disagree, naming the spans only that explains."""
    out = []
    # (caller, server) → the skewed spans of that pair, in their order: one pass, not one per pair.
    by_pair: dict[tuple[str, str], list[str]] = {}
    for sid in estimate.skewed_spans:
        span = spans[sid]
        parent = spans.get(span.parent_span_id or "")
        if parent is not None:
            by_pair.setdefault((parent.service, span.service), []).append(sid)
    # Natively (native/src/fan_out.rs `skew_finding`): the same finding, its floats' texts by CPython's own repr
    # (tests/test_skew_ms.py); None: `_pair_finding_python`, the reference, makes it.
    native = getattr(_native.MODULE, "skew_finding", None)
    for pair in estimate.pairs:
        ids = tuple(by_pair.get((pair.caller, pair.server), ()))
        if not ids or not pair.skewed:
            continue
        made = native(pair.caller, pair.server, pair.low_ns, pair.high_ns, pair.pairs, ids, _finding, Severity.INFO,
                      Severity.WARNING) if native is not None else None
        out.append(made if made is not None else _pair_finding_python(pair, ids))
    impossible = tuple(estimate.impossible_spans)
    if impossible:
        out.append(Finding(
            "clock_skew", Severity.INFO,
            f"{len(impossible)} server span(s) last longer than the call that caused them: no clock offset explains "
            "that (clocks drifting, or the caller ended its span early)",
            impossible, {"spans": list(impossible)},
        ))
    return tuple(out)


def _pair_finding_python(pair: PairSkew, ids: tuple[str, ...]) -> Finding:
    """The finding of a skewed pair whose spans `ids` only the clocks explain."""
    low, high = pair.low_ns, pair.high_ns
    offset = (low + high) // 2  # `offset_ns`, and each `_ms` once: a pair seen once has low = high = offset
    min_ms = _ms(low)
    max_ms = min_ms if high == low else _ms(high)
    offset_ms = min_ms if offset == low else max_ms if offset == high else _ms(offset)
    ahead = "ahead of" if offset > 0 else "behind"
    severity = Severity.WARNING if abs(offset) >= 100_000_000 else Severity.INFO
    return _finding(
        "clock_skew", severity,
        f"{pair.server}'s clock runs {abs(offset_ms)} ms (± {_ms(abs(high - low) // 2)}) {ahead} {pair.caller}'s, "
        f"from {pair.pairs} call(s): {len(ids)} span(s) start before or end after their caller — only the clocks explain "
        "that; times are shown as reported, log lines are matched at the estimated offset",
        ids,
        {"caller": pair.caller, "server": pair.server, "offset_ms": offset_ms,
         "min_ms": min_ms, "max_ms": max_ms, "pairs": pair.pairs}, 0,
    )
