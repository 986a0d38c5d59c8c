"""Hypothesis strategies: random span trees, including malformed ones."""

from __future__ import annotations

from hypothesis import strategies as st

from correlator.model import Span, Trace


@st.composite
def span_trees(draw: st.DrawFn, max_spans: int = 40, malformed: bool = False) -> Trace:
    n = draw(st.integers(1, max_spans))
    spans = []
    for i in range(n):
        sid = f"{i + 1:016x}"
        if i == 0:
            parent = None
        elif malformed and draw(st.booleans()):
            # orphans, self-parents, forward references (cycles) and missing parents
            parent = f"{draw(st.integers(1, n + 5)):016x}"
        else:
            parent = f"{draw(st.integers(1, i)):016x}"
        start = draw(st.integers(0, 10_000))
        duration = draw(st.integers(-50 if malformed else 0, 5_000))
        spans.append(Span(sid, parent, draw(st.sampled_from(["api", "db", "auth"])), draw(st.sampled_from(["GET", "SELECT", "call"])),
                          start * 1000, (start + duration) * 1000,
                          kind=draw(st.sampled_from(["server", "client", "internal"])),
                          status=draw(st.sampled_from(["ok", "unset", "error"]))))
    if malformed and n > 1 and draw(st.booleans()):
        spans.append(spans[draw(st.integers(0, n - 1))])  # duplicate span ID
    return Trace("1" * 32, tuple(spans))
