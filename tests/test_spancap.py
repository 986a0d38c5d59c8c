"""A trace over `jaeger.max_spans`: the kept part is its top and its failures, and the answer says what went."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.model import Span, Trace
from correlator.spancap import cap_spans
from tests.strategies import span_trees

MS = 1_000_000


def _sid(i: int) -> str:
    return f"{i:016x}"


def wide_trace() -> Trace:
    """A root (api), 3 children (cart), 9 grandchildren (db), one of them failing; the answer lists the deepest first."""
    spans = [Span(_sid(1), None, "api", "GET /checkout", 0, 100 * MS)]
    for c in range(3):
        spans.append(Span(_sid(10 + c), _sid(1), "cart", "load", c * MS, (c + 30) * MS))
        for g in range(3):
            spans.append(Span(_sid(100 + 3 * c + g), _sid(10 + c), "db", "SELECT", (c + g) * MS, (c + g + 5) * MS,
                              status="error" if (c, g) == (2, 2) else "unset"))
    return Trace("a" * 32, tuple(reversed(spans)))  # storage order: the root last, where [:limit] would drop it


def test_nothing_is_cut_under_the_limit() -> None:
    trace = wide_trace()
    assert cap_spans(trace, 13) == (trace, None)


def test_the_root_its_children_and_the_error_path_are_kept_and_the_rest_of_the_deepest_level_goes() -> None:
    kept, cut = cap_spans(wide_trace(), 6)

    ids = {span.span_id for span in kept.spans}
    # The failing db span and its parent come first, then breadth-first: the root and every cart span.
    assert ids == {_sid(1), _sid(10), _sid(11), _sid(12), _sid(108), _sid(100)}
    assert [s.span_id for s in kept.spans] == [s.span_id for s in wide_trace().spans if s.span_id in ids]  # answer order
    assert cut is not None and (cut.kept, cut.total, cut.kept_depth, cut.dropped_depths) == (6, 13, 1, (2, 2))
    assert cut.dropped_services == (("db", 7),)
    assert cut.sentence() == ("kept 6 of 13 spans (jaeger.max_spans): every error span and the spans above it, then the top "
                              "of the tree (the tree is whole down to depth 1); 7 deeper spans are not shown (depth 2; db 7)")


def test_an_error_deeper_than_the_limit_allows_still_keeps_the_top() -> None:
    kept, cut = cap_spans(wide_trace(), 2)  # the error path needs 3 spans: it does not fit, the top does
    assert [s.span_id for s in kept.spans] == [_sid(10), _sid(1)]
    assert cut is not None and cut.kept_depth == 0


@settings(max_examples=200, deadline=None)
@given(span_trees(max_spans=30, malformed=True), st.integers(1, 30))
def test_any_trace_is_cut_to_the_limit_without_inventing_or_repeating_spans(trace: Trace, limit: int) -> None:
    kept, cut = cap_spans(trace, limit)
    assert len(kept.spans) == min(limit, len(trace.spans))
    assert (cut is None) == (len(trace.spans) <= limit)
    rest = iter(trace.spans)
    assert all(any(span is other for other in rest) for span in kept.spans)  # a subsequence of the answer
    if cut is not None:
        assert cut.kept + sum(n for _, n in cut.dropped_services) == len(trace.spans)
