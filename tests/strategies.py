"""Hypothesis strategies: random span trees — arbitrary, malformed, and neatly nested ones."""

from __future__ import annotations

from hypothesis import strategies as st

from correlator.model import Span, SpanEvent, Trace

MS = 1_000_000
_SERVICES = ["api", "db", "auth"]
_OPERATIONS = ["GET", "SELECT", "call"]


def _sid(i: int) -> str:
    return f"{i:016x}"


def _attributes(draw: st.DrawFn) -> dict[str, object]:
    choice = draw(st.sampled_from(["none", "sql", "http", "error"]))
    if choice == "sql":
        return {"db.statement": f"SELECT * FROM t WHERE id = {draw(st.integers(0, 3))}"}
    if choice == "http":
        return {"http.response.status_code": draw(st.sampled_from([200, 404, 503, "500", "bogus"]))}
    if choice == "error":
        return {"error": draw(st.sampled_from([True, "true", "false"]))}
    return {}


@st.composite
def span_trees(draw: st.DrawFn, max_spans: int = 40, malformed: bool = False) -> Trace:
    """Any shape: children may overlap, outlive or precede their parent (async work, clock skew).

    With `malformed`, also orphans, self-parents, parent-link cycles, duplicate IDs and
    negative durations.
    """
    n = draw(st.integers(1, max_spans))
    spans = []
    for i in range(n):
        if i == 0:
            parent = None
        elif malformed and draw(st.booleans()):
            parent = _sid(draw(st.integers(1, n + 5)))  # forward (cycles), self, or missing
        else:
            parent = _sid(draw(st.integers(1, i)))
        start = draw(st.integers(0, 10_000))
        duration = draw(st.integers(-50 if malformed else 0, 5_000))
        events = (SpanEvent("exception", start * 1000, {"exception.type": "E", "exception.stacktrace": "x\ny"}),) \
            if draw(st.integers(0, 9)) == 0 else ()
        spans.append(Span(_sid(i + 1), parent, draw(st.sampled_from(_SERVICES)), draw(st.sampled_from(_OPERATIONS)),
                          start * 1000, (start + duration) * 1000,
                          kind=draw(st.sampled_from(["server", "client", "internal"])),
                          status=draw(st.sampled_from(["ok", "unset", "error"])),
                          attributes=_attributes(draw), events=events))
    if malformed and n > 1 and draw(st.booleans()):
        spans.append(spans[draw(st.integers(0, n - 1))])  # duplicate span ID
    return Trace("1" * 32, tuple(spans))


@st.composite
def sequential_trees(draw: st.DrawFn, max_spans: int = 40) -> Trace:
    """Well-formed synchronous code: children nest inside their parent and run one after another."""
    n = draw(st.integers(1, max_spans))
    bounds = [(0, draw(st.integers(1, 10_000)) * MS)]
    free_from = [0]  # per span: where its next child may start
    parents: list[int | None] = [None]
    for _ in range(1, n):
        p = draw(st.integers(0, len(bounds) - 1))
        lo, hi = max(free_from[p], bounds[p][0]), bounds[p][1]
        start = min(hi, lo + draw(st.integers(0, 500)) * MS)
        end = min(hi, start + draw(st.integers(0, 3_000)) * MS)
        free_from[p] = end
        bounds.append((start, end))
        free_from.append(start)
        parents.append(p)
    spans = tuple(
        Span(_sid(i + 1), None if p is None else _sid(p + 1), _SERVICES[i % 3], _OPERATIONS[i % 3], start, end)
        for i, ((start, end), p) in enumerate(zip(bounds, parents, strict=False)))
    return Trace("2" * 32, spans)
